"""Exception types raised by videollama3.

Every error a user can cause (a bad checkpoint, a broken video, a malformed conversation) is raised as one
of these, with the offending input and the reason in the message. They subclass ``ValueError`` (or
``FileNotFoundError``) so code written against the built-in types keeps working.
"""

from __future__ import annotations


class VideoLLaMA3Error(Exception):
    """Base class of every error raised on purpose by videollama3."""


class CheckpointError(VideoLLaMA3Error, ValueError):
    """A checkpoint folder or file is missing, truncated, inconsistent or of an unknown kind."""


class ConfigError(VideoLLaMA3Error, ValueError):
    """A configuration value is invalid."""


class MediaError(VideoLLaMA3Error, ValueError):
    """An image or a video cannot be read or sampled as asked."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """A media file named in a conversation does not exist."""


class ConversationError(VideoLLaMA3Error, ValueError):
    """A conversation is malformed (unknown content type, missing media, bad role...)."""


class InputError(VideoLLaMA3Error, ValueError):
    """Model inputs are inconsistent (e.g. visual tokens and features do not match)."""
