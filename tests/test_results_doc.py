"""Docs tables come from committed result files, never typed: the generator agrees with the page."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO, run

EXPERIMENT = REPO / "experiments" / "ham10000"


@pytest.mark.skipif(not (EXPERIMENT / "results" / "variants").is_dir(), reason="no committed HAM10000 run")
def test_results_page_is_generated_from_the_committed_run():
    proc = run([sys.executable, "workflow/scripts/results-doc.py", str(EXPERIMENT), "docs/results-ham10000.md",
                "--check"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr


def test_generator_fails_on_a_page_that_differs(tmp_path):
    """The check can fail: a typed table inside the generated section is caught."""
    if not (EXPERIMENT / "results" / "variants").is_dir():
        pytest.skip("no committed HAM10000 run")
    page = tmp_path / "page.md"
    page.write_text("# x\n<!-- results:begin -->\n| typed | 0.999 |\n<!-- results:end -->\n")
    proc = run([sys.executable, "workflow/scripts/results-doc.py", str(EXPERIMENT), str(page), "--check"],
               cwd=REPO, check=False)
    assert proc.returncode == 1 and "differs" in proc.stderr
