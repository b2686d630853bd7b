"""The small files kept with the images: metadata.csv, attribution.txt and licenses/<license>.txt."""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import PipelineError
from ...raw_layout import LICENSE_TEXTS, write_attribution, write_licenses, write_metadata_csv
from .client import IsicClient
from .selection import flatten

log = logging.getLogger(__name__)


def license_texts(client: IsicClient, names: set[str]) -> dict[str, str]:
    """The archive's own license texts; the built-in summaries where the archive cannot give one."""
    texts = {}
    for name in sorted(names):
        try:
            texts[name] = client.license_text(name)
        except PipelineError as exc:
            fallback = LICENSE_TEXTS.get(name)
            log.warning("license %s: %s; using the built-in text%s", name, exc, "" if fallback else " (name only)")
            if fallback:
                texts[name] = fallback
    return texts


def write_small_files(records: list[dict], folder: Path, client: IsicClient) -> dict[str, int]:
    """Write metadata.csv (isic-cli columns), attribution.txt and licenses/; return images per license."""
    rows = [flatten(r) for r in records]
    write_metadata_csv(rows, folder / "metadata.csv")
    write_attribution(rows, folder / "attribution.txt")
    licenses: dict[str, int] = {}
    for row in rows:
        name = row.get("copyright_license")
        if name:
            licenses[str(name)] = licenses.get(str(name), 0) + 1
    write_licenses(licenses, folder / "licenses", license_texts(client, set(licenses)))
    return dict(sorted(licenses.items()))
