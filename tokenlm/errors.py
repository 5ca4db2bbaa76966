"""Errors a user can cause.

Every problem that comes from the user's input (a file, a checkpoint, a token file,
an argument) raises a subclass of :class:`TokenLMError` whose message says what is
wrong and, where it helps, what to do. The command line prints that message on one
line and exits non-zero; library callers can catch the one base class.
"""

from __future__ import annotations


class TokenLMError(Exception):
    """Base class of every error tokenlm raises for bad input."""


class AudioError(TokenLMError, ValueError):
    """Audio that cannot be used: unreadable, empty, NaN/Inf samples, wrong shape."""


class CodecError(TokenLMError, ValueError):
    """A codec cannot do what was asked: bad codes, wrong input shape, missing weights."""


class CheckpointError(TokenLMError):
    """A checkpoint that cannot be loaded: missing, truncated, wrong keys, config mismatch."""


class TokenFileError(TokenLMError):
    """A token file that cannot be read or does not belong to the codec at hand."""
