"""The small files kept with the images: metadata.csv, attribution.txt and licenses/<license>.txt."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ...errors import PipelineError
from ...raw_layout import LICENSE_TEXTS, write_attribution, write_licenses, write_metadata_csv
from .client import IsicClient
from .selection import flatten

log = logging.getLogger(__name__)


class LicenseFetcher:
    """Fetches each license text in a thread of its own as soon as a record names it, so the texts arrive
    while the images download instead of one after another once paging is over."""

    def __init__(self, options, stop: threading.Event | None = None):
        self.options, self.stop = options, stop
        self.threads: dict[str, threading.Thread] = {}
        self.results: dict[str, str | PipelineError] = {}

    def want(self, records: list[dict]) -> None:
        for record in records:
            name = record.get("copyright_license")
            if name and str(name) not in self.threads:
                thread = threading.Thread(target=self._fetch, args=(str(name),), daemon=True,
                                          name=f"isic-license-{name}")
                self.threads[str(name)] = thread
                thread.start()

    def _fetch(self, name: str) -> None:
        try:
            with IsicClient(self.options, self.stop) as client:  # a session per thread: never shared
                self.results[name] = client.license_text(name)
        except PipelineError as exc:
            self.results[name] = exc
        except BaseException as exc:  # noqa: BLE001 - reported where the texts are used, in the main thread
            self.results[name] = PipelineError(f"{type(exc).__name__}: {exc}")

    def texts(self, names: set[str]) -> dict[str, str]:
        """The texts of `names` (waiting for those still on their way), with the built-in fallbacks."""
        texts = {}
        for name in sorted(names):
            thread = self.threads.get(name)
            if thread is not None:
                thread.join()
            result = self.results.get(name, PipelineError("not fetched"))
            if isinstance(result, str):
                texts[name] = result
                continue
            fallback = LICENSE_TEXTS.get(name)
            log.warning("license %s: %s; using the built-in text%s", name, result, "" if fallback else " (name only)")
            if fallback:
                texts[name] = fallback
        return texts


def write_small_files(records: list[dict], folder: Path, fetcher: LicenseFetcher) -> dict[str, int]:
    """Write metadata.csv (isic-cli columns), attribution.txt and licenses/; return images per license.
    The license texts come from `fetcher`, which started fetching them as the records arrived."""
    rows = [flatten(r) for r in records]
    write_metadata_csv(rows, folder / "metadata.csv")
    write_attribution(rows, folder / "attribution.txt")
    licenses: dict[str, int] = {}
    for row in rows:
        name = row.get("copyright_license")
        if name:
            licenses[str(name)] = licenses.get(str(name), 0) + 1
    write_licenses(licenses, folder / "licenses", fetcher.texts(set(licenses)))
    return dict(sorted(licenses.items()))
