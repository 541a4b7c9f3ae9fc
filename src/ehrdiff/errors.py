"""User-facing errors: one line that says what is wrong and what to do.

Library code raises these; the CLI prints the message and exits non-zero without a traceback.
Anything else that escapes is a bug and keeps its traceback.
"""


class EhrdiffError(Exception):
    """A problem with the user's input, files or settings (never a bug in ehrdiff)."""


class DataError(EhrdiffError):
    """Input data that cannot be used as given (missing file, bad column, bad values)."""


class ModelFileError(EhrdiffError):
    """A model directory that is missing, incomplete or has been modified."""
