"""Exceptions that Lepton raises for user errors.

Every user-facing error is a :class:`LeptonError`; the CLI prints its message as one line
(no traceback) and exits with status 2. Messages name the value, what was expected and the fix.
"""


class LeptonError(Exception):
    """Base class of every error Lepton raises on purpose."""


class ConfigError(LeptonError, ValueError):
    """A configuration value or option is missing, unknown, of the wrong type or out of range."""


class FormatError(LeptonError, ValueError):
    """A file on disk is truncated, corrupted, forged or of an unsupported version."""


class DataError(LeptonError):
    """A dataset is missing, fails verification, or has the wrong shape or type."""


class ResultOnOtherNode(LeptonError):
    """A multi-node job finished, but global rank 0, which saves the result, ran on another machine.

    Not a failure: the CLI prints the message and exits 0 on such a node.
    """


class UntrustedCodeError(LeptonError):
    """A model name, file or config asks Lepton to import and run Python code, and the user did not allow it
    (``--trust-code`` / ``trust_code=True``)."""
