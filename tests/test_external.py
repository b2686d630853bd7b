"""External test sets (issue 11): the external stage prepares them as training data were prepared (missing
fields filled with the INTERNAL train means), evaluate scores every variant on each with the same metrics
and intervals plus the threshold transfer, compare and the report show them beside the internal test set;
PPV / NPV at stated prevalences replace the class-balanced test set."""

from __future__ import annotations

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from skinlesion import compare, external, metrics  # noqa: E402
from skinlesion.errors import PipelineError  # noqa: E402
from skinlesion.io import read_json  # noqa: E402

VARIANTS = {"lr": {"kind": "logreg", "task": "binary"}, "lr_five": {"kind": "logreg", "task": "multiclass"}}


def external_records(n: int = 40) -> list[dict]:
    """ISIC-2017-like rows: no site, no diameter, no patient or lesion ids; some ages and one sex missing."""
    rows = []
    for i in range(n):
        malignant = i % 4 == 0
        rows.append({
            "isic_id": f"ISIC_{9000000 + i:07d}",
            "age_approx": "" if i % 5 == 0 else str(30 + 5 * (i % 8)),
            "sex": "" if i == 3 else ("male" if i % 2 else "female"),
            "diagnosis_1": "Malignant" if malignant else "Benign",
            "diagnosis_2": "Malignant melanocytic proliferations (Melanoma)" if malignant else "",
            "diagnosis_3": "Melanoma, NOS" if malignant else "",
        })
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """synthetic fetch -> metadata -> images -> external -> train -> evaluate -> compare, in-process."""
    from conftest import lesion_image
    from skinlesion import evaluation, images, metadata, raw_layout, sources, training

    root = tmp_path_factory.mktemp("external")
    # the external set, in isic-cli layout beside the project
    ext_dir = root / "elsewhere"
    (ext_dir / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    recs = external_records()
    for r in recs:
        lesion_image(rng, size=48, dark=r["diagnosis_1"] == "Malignant").save(ext_dir / "images" / f"{r['isic_id']}.jpg")
    full = [{"attribution": "Elsewhere clinic", "copyright_license": "CC-0", **r} for r in recs]
    raw_layout.write_metadata_csv(full, ext_dir / "metadata.csv")
    project = root / "project"
    project.mkdir()
    params = {"seed": 5, "data": {"source": "synthetic", "synthetic": {"n_patients": 50, "image_size": 32}},
              "metadata": {}, "split": {"val": 0.25, "test": 0.25},
              "images": {"size": 32, "shard_size": 64, "workers": 1},
              "train": {"learning_rate": 0.01, "batch_size": 16, "epochs": 2, "patience": 2},
              "evaluate": {"threshold": "youden", "bootstrap": 200,
                           "external": [{"name": "elsewhere", "path": "../elsewhere", "layout": "isic-cli"}]},
              "variants": VARIANTS}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cwd = os.getcwd()
    os.chdir(project)  # paths in params are relative to where the stages run
    try:
        table, shards = "data/interim/metadata.parquet", "data/processed/shards"
        sources.fetch(params, "data/raw")
        metadata.run("data/raw", table, params)
        images.run(table, "data/raw", shards, params)
        manifest = external.run(params, "data/external", "data/interim/metadata_summary.json")
        for name in VARIANTS:
            training.run(params, name, table, shards, f"models/{name}")
            evaluation.run(params, name, f"models/{name}", table, shards, f"results/variants/{name}",
                           external_dir="data/external")
        compare.run([f"results/variants/{n}" for n in VARIANTS], "results/all", params_path="params.yaml",
                    raw_dir="data/raw", summary_path="data/interim/metadata_summary.json")
    finally:
        os.chdir(cwd)
    return project, params, manifest


def test_external_stage_cleans_labels_and_imputes_with_internal_train_means(run):
    project, _, manifest = run
    internal = read_json(project / "data/interim/metadata_summary.json")["imputation_means_train"]
    table = pd.read_parquet(project / "data/external/elsewhere/metadata.parquet")
    assert manifest["sets"][0]["name"] == "elsewhere" and manifest["imputation_means_train"] == internal
    assert len(table) == 39 and set(table["split"]) == {"external"}  # the row without sex dropped, as in training
    summary = read_json(project / "data/external/elsewhere/metadata_summary.json")
    assert summary["dropped"] == {"sex missing (metadata.drop_missing_sex)": 1}
    # age: missing cells get the INTERNAL train mean, not this set's own mean
    missing_age = table["age_approx_missing"]
    assert missing_age.sum() == 8
    assert np.allclose(table.loc[missing_age, "age_approx"], internal["age_approx"])
    own_mean = table.loc[~missing_age, "age_approx"].mean()
    assert abs(own_mean - internal["age_approx"]) > 1  # so the check above can tell the two apart
    # diameter and site: absent from the whole set, so missing everywhere, exactly as a missing test value
    assert table["clin_size_long_diam_mm_missing"].all()
    assert np.allclose(table["clin_size_long_diam_mm"], internal["clin_size_long_diam_mm"])
    assert table["anatom_site_1"].isna().all()
    assert table["group"].tolist() == table["isic_id"].tolist()  # no patient / lesion ids: one image, one group
    assert table["label"].astype(int).sum() == 10 and set(table["label_multiclass"].dropna().astype(int)) == {0, 2}
    index = pd.read_parquet(project / "data/external/elsewhere/shards/index.parquet")
    assert len(index) == 39
    shard = np.load(project / "data/external/elsewhere/shards/shard-00000.npy")
    assert shard.shape[1:] == (32, 32, 3)
    assert not (project / "data/external/elsewhere/.raw").exists()  # the raw copy is not kept
    assert (project / "data/external/elsewhere/attribution.txt").read_text() == "Elsewhere clinic"


def test_no_external_sets_still_writes_the_folder(tmp_path):
    manifest = external.run({"evaluate": {"external": []}}, tmp_path / "ext", tmp_path / "absent.json")
    assert manifest["sets"] == [] and (tmp_path / "ext" / "manifest.json").exists()


@pytest.mark.parametrize("entry,message", [
    ({"name": "../up", "path": "x"}, "must be a slug"),
    ({"name": "ok", "path": ""}, "has no path"),
    ({"name": "ok", "path": "x", "layout": "weird"}, "is not one of"),
])
def test_bad_external_entries_are_refused(entry, message):
    with pytest.raises(PipelineError, match=message):
        external.sets({"evaluate": {"external": [entry]}})


def test_a_missing_or_unreadable_path_is_named(tmp_path):
    params = {"evaluate": {"external": [{"name": "gone", "path": str(tmp_path / "nowhere")}]}}
    with pytest.raises(PipelineError, match=r"evaluate.external\[0\] \(gone\).*does not exist"):
        external.run(params, tmp_path / "ext", tmp_path / "summary.json")
    assert not (tmp_path / "ext").exists()
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0)
        params["evaluate"]["external"][0]["path"] = str(locked)
        with pytest.raises(PipelineError, match="not readable"):
            external.run(params, tmp_path / "ext", tmp_path / "summary.json")


def test_schema_checks_the_names():
    from skinlesion import params as P

    base = yaml.safe_load((P.schema_path().parents[3] / "params.yaml").read_text())
    base["evaluate"]["external"] = [{"name": "Bad Name", "path": "x"}]
    with pytest.raises(PipelineError, match="evaluate.external.0.name"):
        P.validate(base)


def test_every_variant_is_scored_on_the_external_set(run):
    project, _, _ = run
    for name in VARIANTS:
        m = read_json(project / f"results/variants/{name}/evaluation.json")
        assert "test_balanced" not in m
        block = m["external"]["elsewhere"]
        assert block["n"] == (39 if name == "lr" else 39)  # benign + melanoma all in the five classes
        binary = block if m["task"] == "binary" else block["malignant_vs_benign"]
        assert binary["n_malignant"] == 10 and binary["n_groups"] == 39 and binary["bootstrap_replicates"] == 200
        assert binary["threshold"] == (m["test_natural"] if m["task"] == "binary"
                                       else m["test_natural"]["malignant_vs_benign"])["threshold"]
        assert binary["roc_auc_ci95"] is not None and "ppv_at_50_prevalence" in binary
        headline = read_json(project / f"results/variants/{name}/metrics.json")
        assert set(headline) == {"test_natural", "external"} and "elsewhere" in headline["external"]
    pred = pd.read_csv(project / "results/variants/lr/predictions.csv")
    assert (pred["split"] == "external:elsewhere").sum() == 39


def test_threshold_transfer_matches_a_direct_computation(run):
    project, params, _ = run
    m = read_json(project / "results/variants/lr/evaluation.json")
    t = m["external"]["elsewhere"]["threshold_transfer"]
    pred = pd.read_csv(project / "results/variants/lr/predictions.csv")
    ext = pred[pred["split"] == "external:elsewhere"]
    y, p = ext["label"].to_numpy(), ext["p_malignant"].to_numpy()
    internal = read_json(project / "bundles/lr/bundle.json")["decision"]["threshold"]
    assert t["internal_threshold"] == pytest.approx(internal, abs=1e-6)
    flagged = p >= internal
    assert t["at_internal_threshold"]["sensitivity"] == pytest.approx(flagged[y == 1].mean(), abs=1e-6)
    assert t["at_internal_threshold"]["specificity"] == pytest.approx((~flagged[y == 0]).mean(), abs=1e-6)
    # the set's own Youden threshold by brute force: the highest score whose J = sens + spec - 1 is the largest
    j = {t: (p[y == 1] >= t).mean() - (p[y == 0] >= t).mean() for t in np.unique(p)}
    own = max(t for t, v in j.items() if v >= max(j.values()) - 1e-12)
    assert t["own_threshold"] == pytest.approx(own, abs=1e-6)
    assert t["at_own_threshold"]["sensitivity"] == pytest.approx((p >= own)[y == 1].mean(), abs=1e-6)
    assert t["at_own_threshold"]["specificity"] == pytest.approx((p < own)[y == 0].mean(), abs=1e-6)
    # Youden's J at the oracle threshold can only be at least that of the transferred one
    j = lambda side: side["sensitivity"] + side["specificity"]  # noqa: E731
    assert j(t["at_own_threshold"]) >= j(t["at_internal_threshold"]) - 1e-9
    assert t["internal_test"]["sensitivity"] == m["test_natural"]["sensitivity"]
    assert "oracle" in t["note"]


def test_predictive_values_at_stated_prevalences():
    ppv, npv = metrics.predictive_values(0.8, 0.9, 0.5)
    assert ppv == pytest.approx(0.8 / (0.8 + 0.1)) and npv == pytest.approx(0.9 / (0.9 + 0.2))
    ppv, npv = metrics.predictive_values(0.8, 0.9, 0.2)
    assert ppv == pytest.approx(0.16 / (0.16 + 0.08)) and npv == pytest.approx(0.72 / (0.72 + 0.04))
    y = np.array([0] * 80 + [1] * 20)
    p = np.r_[np.linspace(0, 0.6, 80), np.linspace(0.4, 1, 20)]
    block = metrics.binary(y, p, 0.5, None, 300, 0, {"50": 0.5, "train": 0.2})
    s, t = block["sensitivity"], block["specificity"]
    assert block["ppv_at_50_prevalence"] == pytest.approx(s / (s + 1 - t), abs=1e-6)
    # at the set's own prevalence, Bayes gives back the plain PPV
    assert block["ppv_at_train_prevalence"] == pytest.approx(block["ppv"], abs=1e-6)
    ci = block["ppv_at_50_prevalence_ci95"]
    assert ci["low"] <= block["ppv_at_50_prevalence"] <= ci["high"]
    assert block["prevalences"] == {"50": 0.5, "train": 0.2}
    # the other metrics are unchanged by asking for predictive values (same bootstrap draws)
    plain = metrics.binary(y, p, 0.5, None, 300, 0)
    assert all(plain[k] == block[k] for k in plain)


def test_compare_and_report_show_internal_and_external_side_by_side(run):
    project, _, _ = run
    frame = pd.read_csv(project / "results/all/metrics.csv")
    assert sorted(frame["test_set"].unique()) == ["external:elsewhere", "natural"]
    assert len(frame) == 2 * len(VARIANTS)
    ext = frame[(frame["variant"] == "lr") & (frame["test_set"] == "external:elsewhere")].iloc[0]
    m = read_json(project / "results/variants/lr/evaluation.json")
    t = m["external"]["elsewhere"]["threshold_transfer"]
    assert ext["own_threshold"] == pytest.approx(t["own_threshold"])
    assert ext["sensitivity_at_own_threshold"] == pytest.approx(t["at_own_threshold"]["sensitivity"])
    natural = frame[(frame["variant"] == "lr") & (frame["test_set"] == "natural")].iloc[0]
    assert np.isnan(natural["own_threshold"]) and natural["ppv_at_50_prevalence"] >= 0
    assert natural["train_prevalence"] == pytest.approx(m["test_natural"]["prevalences"]["train"])
    page = (project / "results/all/index.html").read_text(encoding="utf-8")
    transfer = re.search(r'<table class="sortable" id="transfer-table">.*?</table>', page, re.S).group(0)
    assert transfer.count("<tr") == 1 + len(VARIANTS) and "elsewhere" in transfer
    assert "oracle" in page and "External: elsewhere" in page and "PPV @ 50%" in page
    rows = re.search(r'<table class="sortable" id="comparison-table">.*?</table>', page, re.S).group(0)
    assert rows.count("external:elsewhere") == len(VARIANTS)


def _doc_script():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("results_external", REPO / "workflow/scripts/results-external.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_external_page_is_generated_from_the_run(run, tmp_path):
    project, _, _ = run
    doc = _doc_script()
    page = tmp_path / "page.md"
    page.write_text("# x\nprose\n<!-- results:begin -->\n| typed | 0.999 |\n<!-- results:end -->\nend\n")
    assert doc.main([str(project), str(page), "--check"]) == 1  # a typed table is caught
    assert doc.main([str(project), str(page)]) == 0 and doc.main([str(project), str(page), "--check"]) == 0
    text = page.read_text()
    assert text.startswith("# x\nprose\n") and text.endswith("<!-- results:end -->\nend\n")
    m = read_json(project / "results/variants/lr/evaluation.json")
    t = m["external"]["elsewhere"]["threshold_transfer"]
    row = next(line for line in text.splitlines() if line.startswith("| lr | ") and "(" in line and "binary" not in line)
    assert f"{t['own_threshold']:.3f}" in row and f"{t['at_internal_threshold']['sensitivity']:.3f}" in row
    assert f"{m['external']['elsewhere']['roc_auc']:.3f}" in text and "`../elsewhere`" in text


def test_committed_results_external_page_matches_the_experiment():
    from conftest import REPO

    doc = _doc_script()
    assert doc.main([str(REPO / "experiments/ham10000"), str(REPO / "docs/results-external.md"), "--check"]) == 0, \
        "run: python workflow/scripts/results-external.py experiments/ham10000 docs/results-external.md"


@pytest.mark.realdata
def test_isic2017_val_is_prepared_as_training_data(tmp_path):
    """The real external set beside the repository: 150 images, one without sex, no site, no diameter."""
    from conftest import SHARED

    folder = SHARED / "data" / "isic2017-val"
    if not (folder / "metadata.csv").exists():
        pytest.skip(f"{folder} is not here")
    summary = tmp_path / "metadata_summary.json"
    summary.write_text('{"imputation_means_train": {"age_approx": 51.5, "clin_size_long_diam_mm": null}}')
    params = {"metadata": {}, "images": {"size": 64, "shard_size": 512, "workers": 1},
              "evaluate": {"external": [{"name": "isic2017-val", "path": str(folder), "layout": "isic-cli"}]}}
    manifest = external.run(params, tmp_path / "external", summary)
    entry = manifest["sets"][0]
    assert (entry["rows_in"], entry["rows"], entry["images"], entry["malignant"]) == (150, 149, 149, 30)
    table = pd.read_parquet(tmp_path / "external/isic2017-val/metadata.parquet")
    assert table["anatom_site_1"].isna().all() and table["clin_size_long_diam_mm_missing"].all()
    assert (table["clin_size_long_diam_mm"] == 0.0).all()  # HAM10000's train has no diameter: 0, as in training
    assert set(table["multiclass_name"]) == {"benign", "melanoma"}


def test_an_external_set_overlapping_the_internal_data_stops_evaluate(run, tmp_path):
    """Two images of the internal data under their own ids in an external folder: evaluate refuses to score
    the set as new, with the count and the ids, and writes nothing."""
    from conftest import lesion_image
    from skinlesion import evaluation

    project, params, _ = run
    internal = pd.read_parquet(project / "data/interim/metadata.parquet")
    taken = internal["isic_id"].sort_values().iloc[:2].tolist()
    folder = tmp_path / "leaky"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(2)
    recs = external_records(8)
    for r, isic_id in zip(recs, taken):
        r["isic_id"] = isic_id
    recs = [r for r in recs if r["sex"]]
    for r in recs:
        lesion_image(rng, size=48, dark=r["diagnosis_1"] == "Malignant").save(folder / "images" / f"{r['isic_id']}.jpg")
    raw_layout_rows = [{"attribution": "Leaky clinic", "copyright_license": "CC-0", **r} for r in recs]
    from skinlesion import raw_layout

    raw_layout.write_metadata_csv(raw_layout_rows, folder / "metadata.csv")
    leaky = {**params, "evaluate": {**params["evaluate"],
                                    "external": [{"name": "leaky", "path": str(folder), "layout": "isic-cli"}]}}
    cwd = os.getcwd()
    os.chdir(project)
    try:
        external.run(leaky, tmp_path / "ext", "data/interim/metadata_summary.json")
        with pytest.raises(PipelineError, match=r"external set leaky overlaps .*: 2 of its \d+ images: 2 by isic_id "
                                                rf"\(e.g. {taken[0]}, {taken[1]}\)"):
            evaluation.run(leaky, "lr", "models/lr", "data/interim/metadata.parquet", "data/processed/shards",
                           tmp_path / "out", external_dir=tmp_path / "ext")
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "out").exists()
