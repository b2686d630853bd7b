"""Download images and metadata from the ISIC Archive into the raw layout (work in progress)."""


def configure(parser):
    parser.add_argument("--out", required=True)


def run(args):
    from ...errors import PipelineError

    raise PipelineError("download is not implemented yet")
