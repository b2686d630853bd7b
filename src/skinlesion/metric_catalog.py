"""Every metric the tables show, declared once: compare (metrics.csv), the report and metrics.json read it.

One `Metric` per key of evaluation.json's metric blocks (plus the few metrics.csv derives from them):
its display name, meaning, direction, format, interval, the blocks that hold it, and where it appears.
Each list of metric names those outputs need is derived here, so a metric is added in one place.

Declaration order is the reading order of a variant's section of the report (its per-variant tables).
The other outputs keep the order they were committed with, given by position numbers:

    csv       metrics.csv column (counted after variant, task, test_set). The file is append-only, so older
              readers keep working: never renumber, give a new metric the next number.
    csv_ci    position of its <key>_ci_low / <key>_ci_high pair, after every value column (append-only too).
    column    column of the report's comparison table.
    headline  {block: position} in metrics.json, which keeps few metrics so `dvc exp show` stays readable.

Blocks (the `tasks` a metric applies to): "binary" (a binary variant's sets), "multiclass" (a five-class
variant's sets) and "malignant_vs_benign" (the binary view of a multiclass variant: malignant, any class,
vs benign, score 1 - P(benign); metrics.binary on that score).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

BINARY, MULTICLASS, VIEW = "binary", "multiclass", "malignant_vs_benign"
BINARY_QUESTION = (BINARY, VIEW)            # metrics.binary's output: a binary variant and a multiclass one's view
EVERY_BLOCK = (BINARY, MULTICLASS, VIEW)    # computed by both metrics.binary and metrics.multiclass
HIGHER, LOWER, NEITHER = "higher", "lower", "neither"  # which way is better; NEITHER: a setting or a count

# Where compare finds a value: in the metric block itself, or derived from one of its sub-blocks.
IN_BLOCK, FROM_PREVALENCES, FROM_TRANSFER = "block", "prevalences", "threshold_transfer"

# metrics.csv columns that are not metrics, at their numbers: the variant's, repeated on each of its rows.
CSV_OTHER = {"imagenet_weights": 10}

# Keys of the metric blocks that no table shows under their own name, and why.
INTERNAL = {
    "bootstrap_replicates": "replicates actually drawn; the report gives the variant's bootstrap settings",
    "prevalences": "the stated prevalences of the *_at_*_prevalence metrics; metrics.csv has train_prevalence",
    "recall": "per class: the per-class table",
    "roc_auc_ovr": "per class: the per-class table",
    "average_precision_ovr": "per class: the per-class table",
    "absent_classes": "classes without test images; the per-class table says 'absent from test'",
    "malignant_vs_benign": "the multiclass variant's binary view, a block of its own (VIEW)",
    "threshold_transfer": "external sets: the threshold-transfer table, and metrics.csv's *own_threshold* columns",
}


@dataclass(frozen=True)
class Metric:
    key: str                 # its key in evaluation.json and its metrics.csv column
    label: str               # short display name, HTML (may hold entities): the comparison-table header
    direction: str           # HIGHER, LOWER or NEITHER is better
    tasks: tuple[str, ...]   # the blocks of evaluation.json that hold it (or that compare derives it from)
    description: str         # what it means: the comparison table's tooltip
    digits: int | None = 3   # decimals shown; None: an integer count
    ci: bool = False         # evaluation.json has <key>_ci95 next to it (group bootstrap, 95%)
    source: str = IN_BLOCK
    rows: Mapping[str, str] = field(default_factory=dict, hash=False)  # per-variant table: task -> row label
    column: int | None = None
    csv: int | None = None
    csv_ci: int | None = None
    headline: Mapping[str, int] = field(default_factory=dict, hash=False)
    headline_ci: tuple[str, ...] = ()  # blocks whose metrics.json keeps its interval too

    def __post_init__(self):
        object.__setattr__(self, "rows", MappingProxyType(dict(self.rows)))
        object.__setattr__(self, "headline", MappingProxyType(dict(self.headline)))


M = Metric
CATALOG: tuple[Metric, ...] = (
    # Threshold-free ranking of malignant above benign.
    M("roc_auc", "ROC AUC", HIGHER, BINARY_QUESTION, ci=True, csv=1, csv_ci=1, column=1,
      rows={BINARY: "ROC AUC"}, headline={BINARY: 1, VIEW: 1}, headline_ci=(BINARY,),
      description="Area under the ROC curve: chance that a random malignant case scores above a random benign one "
                  "(0.5 chance, 1 perfect). Multiclass variants: malignant (any class) vs benign, score 1 - P(benign)."),
    M("pauc_above_80_tpr", "pAUC TPR&ge;0.8", HIGHER, BINARY_QUESTION, ci=True, csv=11, csv_ci=3, column=2,
      rows={BINARY: "pAUC TPR&ge;0.8"}, headline={BINARY: 2},
      description="Partial AUC above 80% sensitivity (ISIC 2024 metric), 0 to 0.2; random 0.02."),
    M("average_precision", "AP", HIGHER, BINARY_QUESTION, ci=True, csv=2, csv_ci=2, column=3,
      rows={BINARY: "AP"}, headline={BINARY: 3},
      description="Average precision: area under the precision-recall curve; depends on prevalence."),
    # At the threshold chosen on validation.
    M("sensitivity", "Sensitivity", HIGHER, BINARY_QUESTION, ci=True, csv=3, csv_ci=4, column=4,
      rows={BINARY: "Sensitivity"}, headline={BINARY: 4, VIEW: 2},
      description="Share of malignant cases flagged, at the threshold chosen on validation."),
    M("specificity", "Specificity", HIGHER, BINARY_QUESTION, ci=True, csv=4, csv_ci=5, column=5,
      rows={BINARY: "Specificity"}, headline={BINARY: 5, VIEW: 3},
      description="Share of benign cases not flagged, at the threshold chosen on validation."),
    M("balanced_accuracy", "Balanced acc.", HIGHER, EVERY_BLOCK, ci=True, csv=5, csv_ci=6, column=6,
      rows={BINARY: "Balanced acc.", MULTICLASS: "Balanced acc."}, headline={BINARY: 6, MULTICLASS: 3},
      description="Mean of the per-class recalls (binary: (sensitivity + specificity) / 2; multiclass: over the "
                  "five classes)."),
    # Five-class only.
    M("macro_roc_auc_ovr", "Macro AUC (5-class)", HIGHER, (MULTICLASS,), ci=True, csv=6, csv_ci=7, column=13,
      rows={MULTICLASS: "Macro AUC (one-vs-rest)"}, headline={MULTICLASS: 1}, headline_ci=(MULTICLASS,),
      description="Multiclass only: mean one-vs-rest ROC AUC over the classes present."),
    M("macro_average_precision_ovr", "Macro AP (5-class)", HIGHER, (MULTICLASS,), ci=True,
      rows={MULTICLASS: "Macro AP (one-vs-rest)"}, headline={MULTICLASS: 2},
      description="Multiclass only: mean one-vs-rest average precision over the classes present."),
    M("accuracy", "Accuracy", HIGHER, EVERY_BLOCK, csv=7, rows={MULTICLASS: "Accuracy"},
      description="Share of images whose predicted class is right; depends on the class mix."),
    # Predictive values: at this set's prevalence, then at stated ones (Bayes' rule on sensitivity, specificity).
    M("ppv", "PPV", HIGHER, BINARY_QUESTION, csv=16, rows={BINARY: "PPV (this set's prevalence)"},
      description="Positive predictive value at this set's own share of malignant images."),
    M("npv", "NPV", HIGHER, BINARY_QUESTION, csv=17, rows={BINARY: "NPV (this set's prevalence)"},
      description="Negative predictive value at this set's own share of malignant images."),
    M("ppv_at_50_prevalence", "PPV @ 50%", HIGHER, BINARY_QUESTION, ci=True, csv=22, csv_ci=10, column=9,
      rows={BINARY: "PPV at 50% prevalence"},
      description="Positive predictive value where half the lesions are malignant: Bayes' rule on this set's "
                  "sensitivity and specificity at the validation threshold."),
    M("npv_at_50_prevalence", "NPV @ 50%", HIGHER, BINARY_QUESTION, ci=True, csv=23, csv_ci=11, column=10,
      rows={BINARY: "NPV at 50% prevalence"},
      description="Negative predictive value where half the lesions are malignant."),
    M("ppv_at_train_prevalence", "PPV @ train prev.", HIGHER, BINARY_QUESTION, ci=True, csv=24, csv_ci=12, column=11,
      rows={BINARY: "PPV at train prevalence"},
      description="Positive predictive value at the training split's share of malignant images (the archive's "
                  "prevalence; see train_prevalence in metrics.csv)."),
    M("npv_at_train_prevalence", "NPV @ train prev.", HIGHER, BINARY_QUESTION, ci=True, csv=25, csv_ci=13, column=12,
      rows={BINARY: "NPV at train prevalence"},
      description="Negative predictive value at the training split's prevalence."),
    # Fixed operating points on the test ROC curve.
    M("sensitivity_at_90_specificity", "Sens @ 90% spec", HIGHER, BINARY_QUESTION, ci=True, csv=12, csv_ci=8,
      column=7, rows={BINARY: "Sens @ 90% spec"},
      description="Best sensitivity on the test ROC curve with specificity at least 90%."),
    M("sensitivity_at_95_specificity", "Sens @ 95% spec", HIGHER, BINARY_QUESTION, ci=True, csv=13,
      rows={BINARY: "Sens @ 95% spec"},
      description="Best sensitivity on the test ROC curve with specificity at least 95%."),
    M("specificity_at_90_sensitivity", "Spec @ 90% sens", HIGHER, BINARY_QUESTION, ci=True, csv=14, csv_ci=9,
      column=8, rows={BINARY: "Spec @ 90% sens"},
      description="Best specificity on the test ROC curve with sensitivity at least 90%."),
    M("specificity_at_95_sensitivity", "Spec @ 95% sens", HIGHER, BINARY_QUESTION, ci=True, csv=15,
      rows={BINARY: "Spec @ 95% sens"},
      description="Best specificity on the test ROC curve with sensitivity at least 95%."),
    # Calibration: of P(malignant), or of the top label's probability for five classes.
    M("ece", "ECE", LOWER, (BINARY, MULTICLASS), csv=18, column=14,
      rows={BINARY: "ECE", MULTICLASS: "ECE (top label)"}, headline={BINARY: 7, MULTICLASS: 4},
      description="Expected calibration error: mean gap between predicted probability and observed frequency "
                  "(0 is perfectly calibrated)."),
    M("ece_uncalibrated", "ECE before calibration", LOWER, (BINARY, MULTICLASS), csv=19,
      rows={BINARY: "ECE before calibration", MULTICLASS: "ECE before calibration"},
      description="ECE of the model's own probabilities, before temperature scaling (only with "
                  "evaluate.calibration: temperature)."),
    # Settings and counts.
    M("threshold", "Threshold", NEITHER, BINARY_QUESTION, csv=8, column=15,
      rows={BINARY: "Threshold"}, headline={BINARY: 8, VIEW: 4},
      description="Decision threshold on P(malignant), chosen on validation."),
    M("n", "Images", NEITHER, EVERY_BLOCK, digits=None, csv=9, column=16,
      rows={BINARY: "Images", MULTICLASS: "Images"}, description="Test images."),
    M("n_malignant", "Malignant", NEITHER, BINARY_QUESTION, digits=None, csv=20, rows={BINARY: "Malignant"},
      description="Malignant images in the set."),
    M("n_groups", "Groups", NEITHER, EVERY_BLOCK, digits=None, csv=21, column=17,
      rows={BINARY: "Groups", MULTICLASS: "Groups"},
      description="Patients or lesions in the test set: the bootstrap resamples these."),
    # metrics.csv only, derived by compare from a sub-block.
    M("train_prevalence", "Train prevalence", NEITHER, BINARY_QUESTION, source=FROM_PREVALENCES, csv=26,
      description="The training split's share of malignant images: the prevalence of *_at_train_prevalence."),
    M("own_threshold", "Own threshold", NEITHER, BINARY_QUESTION, source=FROM_TRANSFER, csv=27,
      description="External sets: the threshold the validation rule picks on the set's own labels (an oracle)."),
    M("sensitivity_at_own_threshold", "Sens at own threshold", HIGHER, BINARY_QUESTION, ci=True,
      source=FROM_TRANSFER, csv=28, csv_ci=14,
      description="External sets: sensitivity at the set's own (oracle) threshold."),
    M("specificity_at_own_threshold", "Spec at own threshold", HIGHER, BINARY_QUESTION, ci=True,
      source=FROM_TRANSFER, csv=29, csv_ci=15,
      description="External sets: specificity at the set's own (oracle) threshold."),
)
BY_KEY = {m.key: m for m in CATALOG}


def _by(position: str) -> list[Metric]:
    return sorted((m for m in CATALOG if getattr(m, position) is not None), key=lambda m: getattr(m, position))


def csv_columns() -> list[str]:
    """metrics.csv's columns after variant, task, test_set, up to the intervals: metrics and CSV_OTHER."""
    numbered = [(m.csv, m.key) for m in CATALOG if m.csv is not None] + [(n, k) for k, n in CSV_OTHER.items()]
    return [key for _, key in sorted(numbered)]


def csv_intervals() -> list[str]:
    """The metrics whose <key>_ci_low / <key>_ci_high columns metrics.csv has, in column order."""
    return [m.key for m in _by("csv_ci")]


def table_columns() -> list[Metric]:
    """The comparison table's metric columns, in order."""
    return _by("column")


def rows(task: str) -> list[tuple[str, str]]:
    """(key, label) rows of a variant's metric table for `task` (BINARY also for the multiclass VIEW)."""
    return [(m.key, m.rows[task]) for m in CATALOG if task in m.rows]


def headline_keys(block: str) -> list[str]:
    """What metrics.json keeps of a set's `block`, in order: each metric, then its interval where kept."""
    chosen = sorted((m for m in CATALOG if block in m.headline), key=lambda m: m.headline[block])
    return [k for m in chosen for k in ([m.key, f"{m.key}_ci95"] if block in m.headline_ci else [m.key])]


def view_keys() -> list[str]:
    """Metrics a multiclass variant's rows take from its malignant-vs-benign view: those of the binary
    question that the five-class block has no value of its own for."""
    return [m.key for m in CATALOG if VIEW in m.tasks and MULTICLASS not in m.tasks and m.source == IN_BLOCK]
