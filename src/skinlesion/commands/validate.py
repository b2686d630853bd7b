"""Check a params file whole before anything runs; prints the first problem with its key, or 'ok'.

Checked: YAML without a key given twice (as DVC refuses it), the schema (every key known, every value
allowed), each variant as train builds it (a transfer kind has a backbone, pool_from only on a frozen one),
the backbone layers a variant names (fine_tune.unfreeze_from, pool_from) against the backbone's
architecture built with random weights (no weights needed), and a small CNN's depth against images.size.

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

    params = P.load(args.params)  # the schema, and no key given twice
    resolved = {}
    for name in params["variants"]:  # what the schema cannot say: a transfer kind needs a backbone, ...
        try:
            v = variant.from_params(params, name)
            # ... the backbone layers it names exist (its architecture, no weights), a CNN fits the images
            variant.check_buildable(v, params["images"]["size"])
        except PipelineError as exc:
            raise PipelineError(f"{args.params}: {exc}") from None
        settings = v.as_dict()
        del settings["name"], settings["given"]
        resolved[name] = settings
    print(f"{args.params}: ok ({len(params['variants'])} variants: {', '.join(params['variants'])})")
    if args.show:
        import yaml

        print(yaml.safe_dump(resolved, sort_keys=False), end="")
