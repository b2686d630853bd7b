"""Docs tables come from committed result files, never typed: the generator agrees with the page."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO, run

EXPERIMENT = REPO / "experiments" / "ham10000"


@pytest.mark.skipif(not (EXPERIMENT / "results" / "variants").is_dir(), reason="no committed HAM10000 run")
def test_results_page_is_generated_from_the_committed_run():
    proc = run([sys.executable, "workflow/scripts/results-doc.py", str(EXPERIMENT), "docs/results-ham10000.md",
                "--check"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr


def test_generator_writes_and_then_accepts_a_page_and_fails_on_a_typed_table(tmp_path):
    """The generator on the committed default baseline (always in git): it fills the marked section from the
    result files, --check then passes, and a typed table inside the section is caught."""
    page = tmp_path / "page.md"
    page.write_text("# x\nprose kept\n<!-- results:begin -->\n| typed | 0.999 |\n<!-- results:end -->\nend\n")
    check = [sys.executable, "workflow/scripts/results-doc.py", str(REPO), str(page), "--check"]
    proc = run(check, cwd=REPO, check=False)
    assert proc.returncode == 1 and "differs" in proc.stderr
    run(check[:-1], cwd=REPO)
    text = page.read_text()
    assert "prose kept" in text and text.endswith("end\n") and "| typed |" not in text
    logreg = json.loads((REPO / "results/variants/logreg/evaluation.json").read_text())["test_natural"]
    assert f"| logreg | {logreg['roc_auc']:.3f} (" in text  # the number comes from the file
    assert run(check, cwd=REPO, check=False).returncode == 0


FIGURES = [sys.executable, "workflow/scripts/doc-figures.py"]


def test_every_figure_in_the_prose_is_its_committed_file():
    """README.md, docs/*.md and benchmarks/*.md: every marked figure reads what its committed file gives."""
    proc = run([*FIGURES, "--check"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    listed = run([*FIGURES, "--list"], cwd=REPO).stdout.splitlines()
    pages = "".join(p.read_text() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md"),
                                            *(REPO / "benchmarks").glob("*.md")])
    used = {line.split("\t")[0] for line in listed if f"<!-- fig:{line.split(chr(9))[0]} -->" in pages}
    assert "ham10000.best.test_roc_auc" in used and len(used) >= 10, used
    for line in listed:  # each figure names a committed file it comes from (or one in a named commit)
        source = line.split("\t")[2]
        if source.startswith("git:"):
            _, commit, path = source.split(":", 2)
            assert run(["git", "cat-file", "-e", f"{commit}:{path}"], cwd=REPO, check=False).returncode == 0, line
        else:
            assert run(["git", "ls-files", "--error-unmatch", source], cwd=REPO, check=False).returncode == 0, line


def test_figure_check_catches_a_typed_figure_an_unknown_name_and_an_open_marker(tmp_path):
    """A figure typed inside a marked span fails --check (naming figure, text and file); the rewrite fills it
    from the file, keeps the prose, and --check then passes. An unknown name or a lone marker also fails."""
    evaluation = json.loads((EXPERIMENT / "results/variants/dual_mobilenet_finetune_top_flip/evaluation.json")
                            .read_text())
    page = tmp_path / "page.md"
    page.write_text("Prose kept: a test ROC AUC of <!-- fig:ham10000.best.test_roc_auc -->0.999<!-- /fig --> "
                    "on the test split.\n")
    proc = run([*FIGURES, "--check", str(page)], cwd=REPO, check=False)
    assert proc.returncode == 1
    assert "ham10000.best.test_roc_auc" in proc.stderr and "'0.999'" in proc.stderr
    assert "experiments/ham10000" in proc.stderr
    assert "0.999" in page.read_text()  # --check writes nothing
    run([*FIGURES, str(page)], cwd=REPO)
    expected = f"{evaluation['test_natural']['roc_auc']:.3f}"
    assert page.read_text() == ("Prose kept: a test ROC AUC of <!-- fig:ham10000.best.test_roc_auc -->"
                                f"{expected}<!-- /fig --> on the test split.\n")
    assert run([*FIGURES, "--check", str(page)], cwd=REPO, check=False).returncode == 0

    page.write_text("<!-- fig:no.such.figure -->1<!-- /fig -->\n")
    proc = run([*FIGURES, "--check", str(page)], cwd=REPO, check=False)
    assert proc.returncode == 1 and "no.such.figure" in proc.stderr
    page.write_text("a figure left open <!-- fig:ham10000.best.test_roc_auc -->0.902\n")
    proc = run([*FIGURES, "--check", str(page)], cwd=REPO, check=False)
    assert proc.returncode == 1 and "without its pair" in proc.stderr


LOOKS = [sys.executable, "workflow/scripts/test-looks.py"]


def test_the_committed_run_is_in_its_test_look_ledger():
    proc = run(LOOKS + [str(EXPERIMENT), "--check"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_rescored_test_split_without_a_ledger_entry_fails(tmp_path):
    """A copy of the experiment's results with one evaluation changed (a new run): --check fails and names the
    digest a new entry needs; with that entry added it passes; a look without its keys is named."""
    import shutil

    import yaml

    copy = tmp_path / "ham10000"
    shutil.copytree(EXPERIMENT / "results", copy / "results",
                    ignore=shutil.ignore_patterns("plots", "figures", "*.csv", "all"))
    evaluation = copy / "results" / "variants" / "logreg" / "evaluation.json"
    e = json.loads(evaluation.read_text())
    e["test_natural"]["roc_auc"] = round(e["test_natural"]["roc_auc"] - 0.01, 6)
    evaluation.write_text(json.dumps(e))
    proc = run(LOOKS + [str(copy), "--check"], cwd=REPO, check=False)
    new = run(LOOKS + [str(copy), "--digest"], cwd=REPO).stdout.strip()
    assert proc.returncode == 1 and f"evaluations_sha256: {new}" in proc.stderr, proc.stderr
    ledger = copy / "results" / "test-looks.yaml"
    looks = yaml.safe_load(ledger.read_text())["looks"]
    looks.append({"date": "2026-12-08", "kind": "experiment run", "by": "a test", "what": "a rerun",
                  "test_scored": "1 variant", "chosen_on_test": "none", "evaluations_sha256": new})
    ledger.write_text(yaml.safe_dump({"looks": looks}))
    assert run(LOOKS + [str(copy), "--check"], cwd=REPO, check=False).returncode == 0
    looks.append({"date": "2026-12-09", "kind": "benchmark"})
    ledger.write_text(yaml.safe_dump({"looks": looks}))
    proc = run(LOOKS + [str(copy), "--check"], cwd=REPO, check=False)
    assert proc.returncode == 1 and f"look {len(looks)} lacks" in proc.stderr and "chosen_on_test" in proc.stderr
