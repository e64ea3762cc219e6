"""One exception hierarchy for every error a user can cause.

The CLI turns any ``PgcError`` into a single line on stderr and exit code 2.
Messages name the file or tensor involved and say what to do.
"""


class PgcError(Exception):
    """Base class: a problem with the user's input, options or files."""


class CheckpointError(PgcError):
    """A checkpoint cannot be read as a state dict."""


class FormatError(PgcError):
    """An artifact is corrupt, truncated, foreign or from an unknown version."""


class CodecError(FormatError):
    """A stream cannot be encoded or decoded by its codec."""


class MethodError(PgcError):
    """Unknown quantization method, bad method parameters, or a tensor a method cannot take."""


class BudgetError(PgcError):
    """The artifact does not fit the byte budget."""

    def __init__(self, message: str, total_bytes: int, budget: int):
        super().__init__(message)
        self.total_bytes = total_bytes
        self.budget = budget


class DataError(PgcError):
    """Token shards or tokenizer files are missing, truncated or foreign."""


class ModelError(PgcError):
    """A state dict does not fit the model it is loaded into."""


class PgcWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one
    ``pgc: warning: ...`` line, without Python's source-line echo."""
