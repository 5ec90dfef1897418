"""The one error type users see: a one-line message and exit code 2, no traceback unless --debug."""


class BenchError(Exception):
    """A problem with the user's input or environment, reported as one line.

    Raise it anywhere before work starts; the CLI prints ``error: <message>`` and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
