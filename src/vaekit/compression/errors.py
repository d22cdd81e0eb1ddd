"""The compression errors a user can cause: each is one line in the CLI (exit code 2)."""

from vaekit.errors import VaekitError


class CompressionError(VaekitError, ValueError):
    """Data or a model that cannot be coded: unsupported likelihood or prior, values off the levels."""


class FormatError(VaekitError, ValueError):
    """A file that is not a vaekit compressed file, or is truncated, corrupted or from another model."""
