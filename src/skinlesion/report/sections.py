"""The sections of the HTML report, each a function returning an HTML fragment (all text escaped)."""

from __future__ import annotations

import base64
import json
import math
from html import escape
from pathlib import Path

from .. import metric_catalog

# (column, header, tooltip) of the comparison table; a column with <col>_ci_low/_ci_high gets its interval.
COLUMNS = [(m.key, m.label, m.description) for m in metric_catalog.table_columns()]

CAPTIONS = {
    "roc.png": "ROC curve on the test set (and on each external set). Each point of the curve is one threshold; the "
               "dot is the threshold chosen on the validation set, as it would be used, on the test set. AUC with its "
               "95% interval (bootstrap over patients / lesions). The grey band is the high-sensitivity region the "
               "partial AUC measures. Multiclass variants: one curve per class against all others (test set).",
    "pr.png": "Precision (positive predictive value) against recall (sensitivity), on the test set and on each "
              "external set. Unlike ROC it depends on how common malignancy is in each set; the PPV and NPV rows of "
              "the table restate them at fixed prevalences.",
    "confusion.png": "Confusion matrices on the natural test set: counts (left) and each actual class's row as shares "
                     "(right; the diagonal is that class's recall).",
    "reliability.png": "Reliability diagram: when the model says 30%, is the lesion malignant 3 times in 10? Points on "
                       "the dotted diagonal are well calibrated; below it the model is over-confident. Bars: cases per "
                       "bin. With temperature scaling, before and after.",
    "training.png": "Training history: loss (and AUC or accuracy) per epoch on the training and validation splits. "
                    "A widening gap means over-fitting; the dashed line marks the start of fine-tuning.",
    "gradcam.png": "Grad-CAM heat maps on a fixed, seeded sample of test images (true and false positives and "
                   "negatives): red marks the regions that pushed the model towards its answer. A map on the ruler, "
                   "hair or vignette instead of the lesion is a warning sign.",
}
FIGURE_ORDER = ["roc.png", "pr.png", "confusion.png", "reliability.png", "training.png", "gradcam.png"]


def _num(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() and abs(x) >= 2 else f"{x:.{digits}f}"


def cell(value, low=None, high=None) -> str:
    """A table cell sorting by the point value, showing '0.812 [0.71-0.90]'."""
    x = _num(value)
    if x is None:
        return '<td data-sort="" class="muted">&ndash;</td>'
    lo, hi = _num(low), _num(high)
    ci = f' <span class="ci">[{lo:.2f}&ndash;{hi:.2f}]</span>' if lo is not None and hi is not None else ""
    return f'<td data-sort="{x:.6f}">{_fmt(x)}{ci}</td>'


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure(path: Path, caption: str, alt: str, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><img src="{data_uri(path)}" alt="{escape(alt)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _anchor(name: str) -> str:
    return "variant-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def navigation(report) -> str:
    links = ['<a href="#comparison">Comparison</a>']
    if any(v.metrics.get("external") for v in report.variants):
        links.append('<a href="#threshold-transfer">Threshold transfer</a>')
    links += [f'<a href="#{_anchor(v.name)}">{escape(v.name)}</a>' for v in report.variants]
    links += ['<a href="#dataset">Dataset</a>', '<a href="#provenance">Parameters and code version</a>']
    return "<nav>" + " ".join(links) + "</nav>"


def random_variants(report) -> list[str]:
    return [v.name for v in report.variants if v.metrics.get("imagenet_weights") is False]


def warnings(report) -> str:
    names = random_variants(report)
    if not names:
        return ""
    return (
        '<div class="warning" id="random-weights-warning"><h2>&#9888; Trained from RANDOM weights</h2>'
        f"<p>These variants were meant to start from ImageNet weights but none were found, so their backbone was "
        f"trained from random initial weights: <b>{escape(', '.join(names))}</b>. Their results are not those of "
        f"transfer learning and must not be compared as such. Put the weights file where params.yaml "
        f"<code>train.weights</code> points and rerun.</p></div>"
    )


def comparison_table(frame) -> str:
    head = "".join(f'<th title="{escape(tip)}">{label}</th>' for _, label, tip in COLUMNS)
    rows = []
    for rec in frame.to_dict("records"):
        cls = ' class="random"' if rec.get("imagenet_weights") is False else ""
        cells = [f'<td class="text">{escape(str(rec["variant"]))}</td>', f'<td class="text">{escape(str(rec["task"]))}</td>',
                 f'<td class="text">{escape(str(rec["test_set"]))}</td>']
        for column, _, _ in COLUMNS:
            cells.append(cell(rec.get(column), rec.get(f"{column}_ci_low"), rec.get(f"{column}_ci_high")))
        rows.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return ('<div class="table-wrap"><table class="sortable" id="comparison-table"><thead><tr>'
            '<th class="text">Variant</th><th class="text">Task</th><th class="text">Test set</th>'
            f"{head}</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table></div>")


def comparison(report) -> str:
    external = any(v.metrics.get("external") for v in report.variants)
    parts = ['<section id="comparison"><h2>Comparison of variants</h2>',
             "<p>Every variant on its test set: <i>natural</i> is the internal test split (the archive's mix of "
             "benign and malignant, no patient or lesion shared with training)"
             + ("; <i>external:&lt;name&gt;</i> rows are the external test sets of <code>evaluate.external</code>, "
                "images from elsewhere that no stage trained or tuned on, scored at the same threshold"
                if external else "")
             + ". Brackets: 95% confidence intervals from a bootstrap that resamples patients / lesions, not "
             "images. PPV and NPV are given at stated prevalences (50%, and the training split's), computed from "
             "the set's sensitivity and specificity, since ROC AUC, sensitivity and specificity do not depend on "
             "prevalence and a class-balanced test set would only add noise to them. Click a column header to sort; "
             "hover over it for its meaning. The threshold was chosen on the validation split, never on test. "
             "See docs/evaluation.md.</p>",
             comparison_table(report.table)]
    if report.overview_roc is not None and Path(report.overview_roc).exists():
        parts.append(figure(report.overview_roc, "ROC curves of every variant on the natural test set "
                            "(multiclass variants: malignant vs benign, score 1 - P(benign)).",
                            "ROC curves of all variants"))
    parts.append("</section>")
    parts.append(threshold_transfer(report))
    return "\n".join(parts)


def _pair(block: dict) -> str:
    """'sens 0.81 [0.70-0.90] / spec 0.64 [...]' cells of one threshold-transfer side."""
    block = block or {}
    return "".join(cell(block.get(k), (block.get(f"{k}_ci95") or {}).get("low"),
                        (block.get(f"{k}_ci95") or {}).get("high")) for k in ("sensitivity", "specificity"))


def threshold_transfer(report) -> str:
    """Sensitivity and specificity at the internal threshold against those at each external set's own."""
    rows = []
    for v in report.variants:
        for name, block in (v.metrics.get("external") or {}).items():
            t = block.get("threshold_transfer")
            if not t:
                continue
            score = "" if v.metrics.get("task") == "binary" else " <span class=\"muted\">(1 - P(benign))</span>"
            rows.append(f'<tr><td class="text">{escape(v.name)}{score}</td><td class="text">{escape(name)}</td>'
                        f'{cell(t.get("internal_threshold"))}{_pair(t.get("internal_test"))}'
                        f'{_pair(t.get("at_internal_threshold"))}{cell(t.get("own_threshold"))}'
                        f'{_pair(t.get("at_own_threshold"))}</tr>')
    if not rows:
        return ""
    return ('<section id="threshold-transfer"><h2>Threshold transfer</h2>'
            "<p>Does the threshold chosen on the internal validation split still work on images from elsewhere? "
            "<b>At the internal threshold</b> is how the model would be used: the threshold fixed before the "
            "external set was seen. <b>At the set's own threshold</b> is an oracle: the same rule "
            "(<code>evaluate.threshold</code>) applied to the external set's own labels, optimistic by "
            "construction (the threshold is fitted and measured on the same images), shown only as the reference "
            "for what re-calibrating on that site could at best recover. Brackets: 95% group-bootstrap intervals "
            "(for the oracle, with its threshold held fixed).</p>"
            '<div class="table-wrap"><table class="sortable" id="transfer-table"><thead><tr>'
            '<th class="text">Variant</th><th class="text">External set</th><th>Internal threshold</th>'
            "<th>Sens, internal test</th><th>Spec, internal test</th>"
            "<th>Sens at internal threshold</th><th>Spec at internal threshold</th>"
            "<th>Own threshold (oracle)</th><th>Sens at own threshold</th><th>Spec at own threshold</th>"
            "</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table></div></section>")


# ------------------------------------------------------------------------------------------------
# One variant


# (key, label) rows of a variant's metric table; BINARY_ROWS also for a multiclass variant's binary view.
BINARY_ROWS = metric_catalog.rows(metric_catalog.BINARY)
MULTI_ROWS = metric_catalog.rows(metric_catalog.MULTICLASS)
SETS = [("test_natural", "Test (natural)"), ("val", "Validation")]


def _sets(blocks: dict[str, dict]) -> list[tuple[str, str]]:
    """Column order: the internal test split, each external set, validation."""
    external = [(k, "External: " + escape(k.removeprefix("external:"))) for k in blocks if k.startswith("external:")]
    return [SETS[0]] + external + SETS[1:]


def _metrics_table(blocks: dict[str, dict], rows: list[tuple[str, str]], caption: str) -> str:
    present = [(k, label) for k, label in rows if any(b.get(k) is not None for b in blocks.values())]
    sets = _sets(blocks)
    head = "".join(f"<th>{label}</th>" for _, label in sets if _ in blocks)
    body = []
    for key, label in present:
        cells = []
        for set_key, _ in sets:
            if set_key not in blocks:
                continue
            b = blocks[set_key]
            ci = b.get(f"{key}_ci95") or {}
            cells.append(cell(b.get(key), ci.get("low"), ci.get("high")))
        body.append(f'<tr><td class="text">{label}</td>{"".join(cells)}</tr>')
    return (f'<table><caption class="muted">{escape(caption)}</caption><thead><tr><th class="text">Metric</th>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _per_class_table(blocks: dict[str, dict]) -> str:
    natural = blocks.get("test_natural") or {}
    recall, aucs = natural.get("recall") or {}, natural.get("roc_auc_ovr") or {}
    aps = natural.get("average_precision_ovr") or {}
    rows = []
    for name, r in recall.items():
        shown = cell(r) if r != "absent" else '<td class="muted">absent from test</td>'
        rows.append(f'<tr><td class="text">{escape(name.replace("_", " "))}</td>{shown}{cell(aucs.get(name))}'
                    f"{cell(aps.get(name))}</tr>")
    return ('<table><caption class="muted">Per class, natural test set</caption><thead><tr><th class="text">Class'
            "</th><th>Recall</th><th>AUC one-vs-rest</th><th>AP one-vs-rest</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def variant(v) -> str:
    m = v.metrics
    calib = m.get("calibration") or {}
    boot = m.get("bootstrap") or {}
    blocks = {k: m[k] for k, _ in SETS if isinstance(m.get(k), dict)}
    blocks.update({f"external:{n}": b for n, b in (m.get("external") or {}).items() if isinstance(b, dict)})
    parts = [f'<section id="{_anchor(v.name)}"><h2>{escape(v.name)}</h2>']
    if m.get("imagenet_weights") is False:
        parts.append('<div class="warning"><b>&#9888; Trained from RANDOM weights</b>: no ImageNet weights were '
                     "found for this transfer model; these numbers are not those of transfer learning.</div>")
    calib_text = "none" if calib.get("method", "none") == "none" else (
        f"temperature scaling, T = {calib.get('temperature')} (fitted on validation)")
    facts = [("Kind", m.get("kind", "")), ("Task", m.get("task", "")), ("Weights", m.get("weights") or "n/a"),
             ("Calibration", calib_text),
             ("Intervals", f"95%, {boot.get('replicates', 0)} bootstrap replicates over {boot.get('unit', 'groups')}")]
    parts.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(val))}</dd>" for k, val in facts) + "</dl>")
    if m.get("task") == "binary":
        parts.append(_metrics_table(blocks, BINARY_ROWS, "Metrics with 95% intervals"))
    else:
        parts.append(_metrics_table(blocks, MULTI_ROWS, "Five-class metrics with 95% intervals"))
        parts.append(_per_class_table(blocks))
        mal = {k: b["malignant_vs_benign"] for k, b in blocks.items() if isinstance(b.get("malignant_vs_benign"), dict)}
        if mal:
            parts.append(_metrics_table(mal, BINARY_ROWS, "Malignant (any class) vs benign: score 1 - P(benign), "
                                                          "threshold chosen on validation"))
    for path in v.figures:
        parts.append(figure(path, CAPTIONS.get(path.name, path.stem.replace("_", " ")),
                            f"{v.name}: {path.stem}", wide=path.name == "gradcam.png"))
    if not v.figures:
        parts.append('<p class="muted">No figures found for this variant.</p>')
    parts.append("</section>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------
# Dataset and provenance


def _missing(path: str, what: str) -> str:
    return f'<p class="note">{escape(what)}: <code>{escape(path)}</code> was not found, so it is not shown here.</p>'


def _counts_table(counts: dict, title: str) -> str:
    splits = [s for s in ("train", "val", "test") if s in counts] + [s for s in counts if s not in ("train", "val", "test")]
    classes = sorted({c for s in splits for c in counts[s]})
    head = "".join(f"<th>{escape(s)}</th>" for s in splits) + "<th>total</th>"
    rows = []
    for c in classes:
        values = [int(counts[s].get(c, 0)) for s in splits]
        rows.append(f'<tr><td class="text">{escape(c.replace("_", " "))}</td>'
                    + "".join(f"<td>{x}</td>" for x in values) + f"<td>{sum(values)}</td></tr>")
    totals = [sum(int(v) for v in counts[s].values()) for s in splits]
    rows.append('<tr><td class="text"><b>total</b></td>' + "".join(f"<td><b>{x}</b></td>" for x in totals)
                + f"<td><b>{sum(totals)}</b></td></tr>")
    return (f'<table><caption class="muted">{escape(title)}</caption><thead><tr><th class="text">Class</th>{head}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def dataset(info: dict) -> str:
    parts = ['<section id="dataset"><h2>Dataset</h2>']
    source = info.get("source")
    if source is None:
        parts.append(_missing(info.get("source_path", "data/raw/source.json"), "Source and its options"))
    else:
        facts = [("Source", source.get("source", "unknown")), ("Images fetched", source.get("images", "unknown"))]
        parts.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts) + "</dl>")
        parts.append("<details><summary>Source options and summary (source.json)</summary><pre>"
                     + escape(json.dumps(source, indent=2, sort_keys=True)) + "</pre></details>")
    summary = info.get("summary")
    if summary is None:
        parts.append(_missing(info.get("summary_path", "data/interim/metadata_summary.json"),
                              "Counts per class and split, dropped rows"))
    else:
        counts = summary.get("counts") or {}
        parts.append(f"<p>{summary.get('rows_in', '?')} rows in the archive metadata, {summary.get('rows_out', '?')} "
                     f"kept, in {summary.get('groups', '?')} groups (patients or lesions; no group is in two splits)."
                     f" {summary.get('outside_five_classes', 0)} kept image(s) fall outside the five classes and are "
                     "used by binary variants only.</p>")
        for key, title in (("binary", "Images per class and split (binary task)"),
                           ("multiclass", "Images per class and split (five-class task)")):
            if counts.get(key):
                parts.append(_counts_table(counts[key], title))
        dropped = summary.get("dropped") or {}
        if dropped:
            parts.append('<table><caption class="muted">Rows dropped, and why</caption><thead><tr>'
                         '<th class="text">Reason</th><th>Rows</th></tr></thead><tbody>'
                         + "".join(f'<tr><td class="text">{escape(r)}</td><td>{int(n)}</td></tr>' for r, n in dropped.items())
                         + "</tbody></table>")
        else:
            parts.append("<p>No rows were dropped.</p>")
        means = summary.get("imputation_means_train") or {}
        if means:
            parts.append("<p>Missing values filled with the train-split mean: "
                         + ", ".join(f"{escape(k)} = {v}" for k, v in means.items()) + ".</p>")
    parts.append("<h3>Licenses and attribution</h3>")
    attribution = info.get("attribution")
    if attribution is None:
        parts.append(_missing(info.get("attribution_path", "data/raw/attribution.txt"), "Attribution"))
    else:
        lines = [line for line in attribution.splitlines() if line.strip()]
        parts.append("<p>Images by:</p><ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>"
                     if lines else "<p>attribution.txt is empty.</p>")
    licenses = info.get("licenses")
    if licenses is None:
        parts.append(_missing(info.get("licenses_path", "data/raw/licenses"), "License texts"))
    else:
        for name, text in licenses.items():
            parts.append(f"<details><summary>License {escape(name)}</summary><pre>{escape(text)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def provenance(prov: dict) -> str:
    params = prov.get("params_text")
    shown = (f"<pre>{escape(params)}</pre>" if params is not None
             else _missing(str(prov.get("params_path")), "Parameters"))
    return ('<section id="provenance"><h2>Parameters and code version</h2><dl>'
            f"<dt>skinlesion version</dt><dd>{escape(str(prov.get('version')))}</dd>"
            f"<dt>code (sha256 of every stage's modules)</dt><dd><code>{escape(str(prov.get('code')))}</code></dd>"
            f"<dt>params file</dt><dd><code>{escape(str(prov.get('params_path')))}</code></dd></dl>"
            f"{shown}</section>")
