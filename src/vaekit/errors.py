"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class VaekitError(Exception):
    """Base class for every error caused by user input (files, settings, data)."""


class ConfigError(VaekitError, ValueError):
    """An invalid setting: a bad value, an unknown key, a wrong type."""


class DataError(VaekitError, ValueError):
    """A dataset that cannot be read or does not fit the model: missing, corrupt, wrong format or values."""


class CheckpointError(VaekitError):
    """A run directory or checkpoint that is missing, corrupt, or not a vaekit file."""


class TrainingError(VaekitError, RuntimeError):
    """Training cannot go on (for example a non-finite loss under the 'stop' policy)."""
