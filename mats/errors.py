"""Error types. Every message says what was wrong and what the user can do about it."""


class MATSError(Exception):
    """Base class for every error the library raises on purpose."""


class AudioError(MATSError, ValueError):
    """A clip could not be used: empty, corrupt, unsupported, too long, bad sample rate..."""


class CheckpointError(MATSError):
    """A checkpoint folder is missing a file, has mismatched weights or an unknown format version."""


class ConfigError(MATSError, ValueError):
    """A configuration key or value is wrong."""


class DataError(MATSError):
    """A training or evaluation data file could not be parsed."""


class ArgumentError(MATSError, ValueError, TypeError):
    """A call's argument is wrong: a missing or empty question, an unknown task or generation setting, a value of the
    wrong kind. It is also a ValueError and a TypeError, so callers catching either (as Python code expects for a bad
    argument) catch it too."""
