#!/usr/bin/env python3
"""Write the page template that `dvc plots show` / `dvc plots diff` fill, with Vega inlined (issue 21 item 5).

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so without internet it stays blank. This
template carries them inline instead, from the registry package vl-convert-python (the Vega project's own
converter, which ships the libraries; `vl_convert.javascript_bundle`), so the page draws offline, can be
mailed and opens years later. DVC fills `{plot_divs}`; the CDN `<script>` tags it would put in `{scripts}` are
left out on purpose (the template has no such placeholder).

`make install` writes it to .dvc/offline-plots.html (ignored by git: about 0.9 MB, regenerated); .dvc/config's
`plots.html_template` points DVC at it, here and in experiments/ham10000.

    python workflow/scripts/dvc-plots-template.py [--out .dvc/offline-plots.html]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# DVC's plot templates are Vega-Lite 5 specs ($schema v5.json); the bundle carries a matching version.
VEGA_LITE = "5.20"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>DVC plots (offline)</title>
<!-- Vega {vega}, Vega-Lite {vega_lite}, Vega-Embed {embed}: inlined from vl-convert-python {vlc} -->
<script>
{bundle}
</script>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
  table {{ border-spacing: 15px; }}
  div.vega-embed {{ margin: 0.5rem; }}
</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def render() -> str:
    import vl_convert as vlc

    bundle = vlc.javascript_bundle(vl_version=VEGA_LITE)
    if "</script" in bundle.lower() or "{plot_divs}" in bundle:
        raise SystemExit("the Vega bundle contains '</script' or '{plot_divs}': it cannot be inlined as is")
    return PAGE.format(bundle=bundle, vega=vlc.get_vega_version(), vega_lite=VEGA_LITE,
                       embed=vlc.get_vega_embed_version(), vlc=getattr(vlc, "__version__", "?"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".dvc" / "offline-plots.html")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + f".{os.getpid()}.tmp")
    tmp.write_text(render(), encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
