"""The real isic-cli (12.4.0, pinned in the test extra) against the test archive: the same folder either way.

isic-cli talks to http://127.0.0.1:8000 with --dev and to nothing else; here its own code runs unchanged with
that one address pointed at the test archive's port (isic_cli.cli.DOMAINS["dev"]), so tests never fight over
port 8000. The test archive (tests/isic_server.py) answers as the archive's source does (ImageMarkup/isic:
isic/core/api/image.py for the records, cursor paging with an absolute `next`, `count` on the first page,
images/search/size/, zip-download/license-file/<license>/), with the files on a second loopback host in the
archive's three URL shapes, signed CloudFront URLs among them. isic-cli fetches whatever URL a record names;
`skinlesion download` is told the files' host as a user would be (--allowed-hosts), as the real hosts are
allowed by default.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from isic_server import FakeIsic, images_in  # noqa: E402

pytestmark = pytest.mark.timeout(120)
BIN = Path(sys.executable).parent
# isic-cli's own entry point (isic_cli.cli:main), with its --dev address set to the test archive's origin
ISIC = [sys.executable, "-c", "import sys, isic_cli.cli as cli; cli.DOMAINS['dev'] = sys.argv.pop(1); cli.main()"]


@pytest.fixture
def server():
    with FakeIsic(30) as fake:
        yield fake


def isic_cli(server: FakeIsic, out: Path, *flags: str, home: Path) -> subprocess.CompletedProcess:
    """`isic --dev --guest --no-version-check image download FLAGS OUT`, as a user runs it."""
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local"), **trust(server)}
    result = subprocess.run([*ISIC, server.origin, "--dev", "--guest", "--no-version-check", "image", "download",
                             *flags, str(out)], capture_output=True, text=True, env=env, timeout=100, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def ours(server: FakeIsic, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """`skinlesion download FLAGS OUT` with isic-cli's spellings, the test archive's file host allowed."""
    env = {**{k: v for k, v in os.environ.items() if k != "ISIC_API_URL"}, **trust(server)}
    result = subprocess.run([str(BIN / "skinlesion"), "download", "--api-url", server.api_url, "--allowed-hosts",
                             server.files_host, *flags, str(out)], capture_output=True, text=True, env=env,
                            timeout=100, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def trust(server: FakeIsic) -> dict[str, str]:
    """The environment that makes requests (both tools use it) trust the test archive's own certificate."""
    return {"REQUESTS_CA_BUNDLE": server.cert_file} if server.cert_file else {}


def tree(folder: Path) -> dict[str, str]:
    """Every file of a download folder, path -> sha256; hidden files and our source.json left out."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.relative_to(folder).as_posix() != "source.json"}


@pytest.mark.parametrize("flags", [("-l", "0"), ("-s", "sex:female", "-c", "70,65", "-l", "7")],
                         ids=["everything", "search-collections-limit"])
def test_our_folder_equals_isic_clis_file_for_file(server, tmp_path, flags):
    isic_cli(server, tmp_path / "isic-cli", *flags, home=tmp_path / "home")
    ours(server, tmp_path / "ours", *flags)
    theirs, mine = tree(tmp_path / "isic-cli"), tree(tmp_path / "ours")
    assert theirs == mine
    images = [name for name in theirs if "/" not in name and name.endswith((".jpg", ".png"))]
    want = server.matching("sex:female", (70, 65))[:7] if "-s" in flags else server.records
    assert sorted(Path(name).stem for name in images) == sorted(r["isic_id"] for r in want) and want
    assert {"metadata.csv", "attribution.txt"} <= set(theirs) and any(n.startswith("licenses/") for n in theirs)
    assert any(name.endswith(".png") for name in images) or "-s" in flags  # the archive's PNGs keep their suffix
    assert (tmp_path / "ours" / "source.json").is_file()  # ours alone, and the only file isic-cli lacks


def test_over_https_the_folders_are_the_same(tmp_path):
    with FakeIsic(12, tls=True) as server:  # the API and the file host both on HTTPS, as the archive is
        isic_cli(server, tmp_path / "isic-cli", "-l", "0", home=tmp_path / "home")
        ours(server, tmp_path / "ours", "-l", "0")
    theirs = tree(tmp_path / "isic-cli")
    assert theirs == tree(tmp_path / "ours") and len(images_in(tmp_path / "ours")) == 12


# isic-cli as a user runs it against the real archive (no --dev: https://api.isic-archive.com), with only name
# resolution stood in for, as tests/isic_server.py's real_host_names() does in-process: argv[1] maps each of the
# archive's host names (on 443) to the test archive's address
ISIC_PROD = ("import sys, json, urllib3.util.connection as c; table = {(h, 443): tuple(a) for h, a in "
             "json.loads(sys.argv.pop(1)).items()}; original = c.create_connection; "
             "c.create_connection = lambda address, *a, **k: original(table.get((address[0], int(address[1])), "
             "address), *a, **k); import isic_cli.cli as cli; cli.main()")


def test_on_the_archives_own_host_names_with_no_setting_changed_the_folders_are_the_same(tmp_path, monkeypatch):
    import json

    from isic_server import real_host_names

    from skinlesion import cli

    with FakeIsic(12, real_hosts=True) as server, real_host_names(server):
        table = json.dumps({host: list(address) for (host, _), address in server.addresses().items()})
        home = tmp_path / "home"
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **trust(server)}
        theirs = subprocess.run([sys.executable, "-c", ISIC_PROD, table, "--guest", "--no-version-check", "image",
                                 "download", "-l", "0", str(tmp_path / "isic-cli")], capture_output=True, text=True,
                                env=env, timeout=100, check=False)
        assert theirs.returncode == 0, theirs.stdout + theirs.stderr
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.cert_file)
        monkeypatch.delenv("ISIC_API_URL", raising=False)
        assert cli.main(["download", "-l", "0", str(tmp_path / "ours")]) == 0  # every default: no --api-url, no host
    assert tree(tmp_path / "isic-cli") == tree(tmp_path / "ours") and len(images_in(tmp_path / "ours")) == 12
    assert {e["host"] for e in server.log} >= {"api.isic-archive.com", "content.isic-archive.com"}


def test_each_tool_continues_the_others_folder(server, tmp_path):
    # isic-cli's folder, three images lost: ours fetches exactly those three and writes the rest as isic-cli did
    folder = tmp_path / "isic-cli"
    isic_cli(server, folder, "-l", "0", home=tmp_path / "home")
    complete = tree(folder)
    lost = images_in(folder)[4:7]
    for path in lost:
        path.unlink()
    server.log.clear()
    text = ours(server, folder, "-l", "0").stdout
    fetched = sorted(Path(e["path"]).name for e in server.log if e["path"].startswith("/s3/images/"))
    assert fetched == sorted(p.name for p in lost)
    assert f"{len(images_in(folder)) - 3} already present" in text
    assert tree(folder) == complete

    # our folder: isic-cli takes every image as done (same name, same size) and fetches none
    mine = tmp_path / "ours"
    ours(server, mine, "-l", "0")
    before = tree(mine)
    server.log.clear()
    isic_cli(server, mine, "-l", "0", home=tmp_path / "home")
    assert not [e for e in server.log if e["path"].startswith("/s3/")]
    assert tree(mine) == before


def test_the_local_source_reads_isic_clis_folder_with_labels_and_sites(server, tmp_path):
    from skinlesion import raw_layout, sources

    folder = tmp_path / "isic-cli"
    isic_cli(server, folder, "-l", "0", home=tmp_path / "home")
    params = {"seed": 1, "data": {"source": "local", "local": {"path": str(folder)}}}
    out = tmp_path / "raw"
    sources.fetch(params, out)
    table = raw_layout.read_metadata(out).set_index("isic_id")
    assert len(table) == len(server.records)
    for record in server.records:
        clinical = record["metadata"].get("clinical", {})
        row = table.loc[record["isic_id"]]
        assert (row.get("diagnosis_1") if isinstance(row.get("diagnosis_1"), str) else None) == clinical.get("diagnosis_1")
        site = row.get("anatom_site_1")
        assert (site if isinstance(site, str) else None) == clinical.get("anatom_site_1")
