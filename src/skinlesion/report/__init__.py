"""results/all/index.html: one self-contained page (figures as data: URIs, inline CSS and JS, nothing fetched).

`render(Report)` fills template.html with the sections in skinlesion.report.sections. The content is
deterministic for the same inputs (no timestamps), so an unchanged pipeline gives an unchanged report.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

import pandas as pd


@dataclass
class Variant:
    name: str
    metrics: dict
    figures: list[Path] = field(default_factory=list)


@dataclass
class Report:
    table: pd.DataFrame                       # compare.table(): one row per variant and test set
    variants: list[Variant]
    overview_roc: Path | None = None          # results/all/roc.png
    dataset: dict = field(default_factory=dict)      # see compare.dataset_info
    provenance: dict = field(default_factory=dict)   # params_path, params_text, version, code


def render(report: Report) -> str:
    from . import sections

    template = Template(resources.files(__package__).joinpath("template.html").read_text(encoding="utf-8"))
    prov = report.provenance
    subtitle = (f"{len(report.variants)} variant(s) &middot; skinlesion {html.escape(str(prov.get('version')))} "
                f"&middot; code {html.escape(str(prov.get('code'))[:12])} &middot; params "
                f"{html.escape(str(prov.get('params_path')))}")
    body = "\n".join([
        sections.navigation(report),
        sections.warnings(report),
        sections.comparison(report),
        *[sections.variant(v) for v in report.variants],
        sections.dataset(report.dataset),
        sections.provenance(prov),
    ])
    return template.substitute(title="skinlesion: evaluation report", subtitle=subtitle, body=body)
