"""The errors ffasr reports to users: each carries one line that says what went wrong and what to do.

The CLI prints ``str(error)`` on stderr and exits non-zero; anything else is a bug and keeps its
traceback.
"""


class FfasrError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 1


class AudioError(FfasrError):
    """Audio that cannot be read, or holds nothing to transcribe."""


class ModelError(FfasrError):
    """A model name or checkpoint that cannot be resolved or loaded."""


class ConfigError(FfasrError):
    """An unknown key or bad value in a config file or option."""


class CorrectionRejected(FfasrError):
    """A "correction" that is not one: empty, or too far from what was heard."""


class StateError(FfasrError):
    """The state directory cannot be used: unwritable, locked by another process, or corrupt."""
