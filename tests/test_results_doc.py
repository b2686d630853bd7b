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
