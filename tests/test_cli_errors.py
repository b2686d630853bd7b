"""Every error reaching the `skinlesion` command is one line naming what to fix, exit 2; the traceback only
behind -v. Library errors (Keras, joblib, json, NumPy) included, and a full disk names the path it met."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import pytest
import yaml

from skinlesion import cli

from conftest import base_params, records

# a command whose run raises what a library would: the CLI must turn it into one line
RAISING = textwrap.dedent("""
    import json, sys
    from skinlesion import cli
    from skinlesion.commands import validate

    def run(args):
        {body}

    validate.run = run
    sys.exit(cli.main(sys.argv[1:]))
""")

LIBRARY_ERRORS = {
    "json": ("json.loads('{\"variant\": ')", "json.JSONDecodeError: Expecting value: line 1 column 13 (char 12)"),
    "keras": ("raise ValueError('Exception encountered when calling MaxPooling2D.call().\\n\\n"
              "\\x1b[1mComputed output size would be zero or negative.\\x1b[0m')",
              "ValueError: Exception encountered when calling MaxPooling2D.call(). Computed output size would be "
              "zero or negative."),
    "long": ("raise RuntimeError('x' * 5000)", "RuntimeError: " + "x" * 50),
    "empty": ("raise KeyError()", "KeyError"),
}


def _skinlesion(tmp_path, body: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RAISING.format(body=body), *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", sorted(LIBRARY_ERRORS))
def test_a_library_error_is_one_line_and_the_traceback_is_behind_v(tmp_path, case):
    body, expected = LIBRARY_ERRORS[case]
    proc = _skinlesion(tmp_path, body, "validate")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"skinlesion validate: error: {expected}"), lines[0]
    assert lines[0].endswith("(-v shows the traceback)") and len(lines[0]) < 400, lines[0]

    verbose = _skinlesion(tmp_path, body, "-v", "validate")
    assert verbose.returncode == 2
    assert "Traceback (most recent call last)" in verbose.stderr and "in run" in verbose.stderr, verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == lines[0]  # the one line still ends it


def test_a_full_disk_names_the_output_it_was_writing(make_raw, tmp_path, monkeypatch, capsys):
    """pandas / pyarrow, NumPy and file.write report a full disk without a path (the file is already open):
    the message names the output being written, not '(unknown path)'."""
    import pandas as pd

    def full(*args, **kwargs):  # what pyarrow raises on ENOSPC: errno set, no filename
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    params = base_params()
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    raw = make_raw(records(10))
    out = tmp_path / "interim" / "metadata.parquet"
    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    assert cli.main(["metadata", "--params", str(path), "--raw", str(raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("skinlesion metadata:")]
    assert lines == [f"skinlesion metadata: error: no space left on device at {out}: free some disk space or "
                     "choose an output folder on another disk."], err
    assert not out.exists() and "Traceback" not in err
