"""Check a params file against the schema; prints the first problem with its key, or 'ok'.

With --show, also prints every variant with all its settings filled in (the `train:` section and the
schema's defaults), exactly as train reads it.
"""

from __future__ import annotations

from . import add_params_argument


def configure(parser):
    add_params_argument(parser)
    parser.add_argument("--show", action="store_true", help="print each variant's settings, defaults filled in")


def run(args):
    from .. import params as P

    from .. import variant
    from ..errors import PipelineError

    params = P.load(args.params)
    resolved = {}
    for name in params["variants"]:  # what the schema cannot say: a transfer kind needs a backbone, ...
        try:
            settings = variant.from_params(params, name).as_dict()
        except PipelineError as exc:
            raise PipelineError(f"{args.params}: {exc}") from None
        del settings["name"], settings["given"]
        resolved[name] = settings
    print(f"{args.params}: ok ({len(params['variants'])} variants: {', '.join(params['variants'])})")
    if args.show:
        import yaml

        print(yaml.safe_dump(resolved, sort_keys=False), end="")
