"""The one exception type a user sees: a clear message saying what is wrong and how to fix it."""


class PipelineError(Exception):
    """A problem with the user's input or environment (bad params, unreadable data, missing weights).

    The CLI prints only the message, without a traceback, and exits with status 2.
    """
