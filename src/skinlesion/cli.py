"""The `skinlesion` command: one subcommand per pipeline stage, shared by Snakemake and DVC.

Heavy imports (TensorFlow, pandas) happen inside the subcommands, so `skinlesion --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys

from .errors import PipelineError, storage_error

# subcommand -> (module with `configure(parser)` and `run(args)`, one-line help)
COMMANDS = {
    "fetch": ("skinlesion.commands.fetch", "write data/raw from the source params.yaml selects"),
    "download": ("skinlesion.commands.download", "download images and metadata from the ISIC Archive"),
    "unpack": ("skinlesion.commands.unpack", "write a packed raw folder in isic-cli's layout"),
    "metadata": ("skinlesion.commands.metadata", "clean, label, split and impute metadata -> Parquet"),
    "images": ("skinlesion.commands.images", "decode and resize every image once into shards"),
    "train": ("skinlesion.commands.train", "train one model variant"),
    "external": ("skinlesion.commands.external", "prepare the external test sets (evaluate.external)"),
    "evaluate": ("skinlesion.commands.evaluate", "evaluate one trained variant on its test sets"),
    "compare": ("skinlesion.commands.compare", "compare every evaluated variant in results/all"),
    "predict": ("skinlesion.commands.predict", "score new images with a trained variant"),
    "recalibrate": ("skinlesion.commands.recalibrate", "refit a bundle's threshold on a local labelled set"),
    "convert-bundle": ("skinlesion.commands.convert_bundle", "convert a bundle from an older skinlesion (format 1, joblib)"),
    "validate": ("skinlesion.commands.validate", "check params.yaml whole (schema, keys given twice, layer names)"),
    "summary": ("skinlesion.commands.summary", "what the last run produced, and where its report is"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skinlesion",
        description="Reproducible ISIC dermoscopy pipeline. Every stage reads params.yaml (see README).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        # the docstrings are laid out by hand (example command lines), so their line breaks are kept
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) buries the stage logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .quiet import cuda_probe_noise_filtered

    log = logging.getLogger(__name__)
    try:
        with cuda_probe_noise_filtered():
            return args._run(args) or 0
    except PipelineError as exc:
        log.debug("traceback", exc_info=True)
        print(f"skinlesion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permission denied, read-only file system, disk full: one line, not a traceback
        log.debug("traceback", exc_info=True)
        print(f"skinlesion {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skinlesion {args.command}: interrupted; nothing half-written was left behind.", file=sys.stderr)
        return 130
    except Exception as exc:  # Keras, joblib, json, NumPy, ...: one line naming what went wrong; -v shows where
        log.debug("traceback", exc_info=True)
        print(f"skinlesion {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2


MAX_MESSAGE = 300  # characters of a library's message on the one error line
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_line(exc: BaseException) -> str:
    """`<type>: <message>` on one line for an exception no command turned into a PipelineError: the message's
    lines joined (Keras puts the useful part after an "Exception encountered when calling ..." line),
    terminal colours dropped, cut at MAX_MESSAGE characters, and the hint that -v shows the traceback."""
    message = " ".join(_ANSI.sub("", str(exc)).split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 1].rstrip() + "…"
    kind = type(exc).__qualname__
    if type(exc).__module__ not in ("builtins", "__main__"):
        kind = f"{type(exc).__module__.split('.')[0]}.{kind}"  # json.JSONDecodeError, zipfile.BadZipFile
    return f"{kind}: {message} (-v shows the traceback)" if message else f"{kind} (-v shows the traceback)"


def os_error_line(exc: OSError) -> str:
    """One line for an OSError that escaped a command: storage errors with their fix, network errors
    (requests' are OSErrors) as such, anything else with its path when it has one."""
    error = storage_error(exc)
    if error is not None:
        return str(error)
    if _is_network_error(exc):
        return f"network error ({type(exc).__name__}): {' '.join(str(exc).split())[:300]}. Check the network (-v shows the traceback)."
    name = exc.filename
    if name is None:
        return f"{exc.strerror or exc} (-v shows the traceback)."
    name = os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)
    return f"{exc.strerror or exc} at {name}: check that path (-v shows the traceback)."


def _is_network_error(exc: OSError) -> bool:
    requests = sys.modules.get("requests")  # only loaded if a command used the network
    return isinstance(exc, ConnectionError) or (requests is not None and isinstance(exc, requests.RequestException))


if __name__ == "__main__":
    sys.exit(main())
