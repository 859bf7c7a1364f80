"""The recorder's exceptions. Messages name files and tracks, never people or patients."""

from __future__ import annotations


class RecorderError(Exception):
    """Base class for every recorder failure."""


class UnsupportedCodecError(RecorderError):
    """A track's codec cannot be remuxed into a file without transcoding."""


class ManifestError(RecorderError):
    """A recording directory has no usable state to build a manifest from."""
