"""The ISIC Archive source (work in progress, see issue 3)."""


def fetch(cfg, out, seed):
    from ...errors import PipelineError

    raise PipelineError("the isic source is not implemented yet")
