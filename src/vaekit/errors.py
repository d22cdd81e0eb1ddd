"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class VaekitError(Exception):
    """Base class for every error caused by user input (files, settings, data).

    The message speaks Python (``load_data(data_dir=...)``, ``vaekit.resume(...)``); where the
    command line would say it with its own flags (``--data-dir DIR``, ``--resume RUN``), ``cli``
    holds that wording, and the CLI prints it instead.
    """

    def __init__(self, *args: object, cli: str | None = None):
        super().__init__(*args)
        self.cli = cli


class ConfigError(VaekitError, ValueError):
    """An invalid setting: a bad value, an unknown key, a wrong type."""


class DataError(VaekitError, ValueError):
    """A dataset that cannot be read or does not fit the model: missing, corrupt, wrong format or values."""


class DataNotFound(DataError):
    """A dataset's files are not where they were looked for. ``where``: what to place where (the
    message adds what to do); ``downloadable``: whether ``download=True`` (``--download``) could fetch them."""

    def __init__(self, *args: object, cli: str | None = None, where: str = "", downloadable: bool = False):
        super().__init__(*args, cli=cli)
        self.where, self.downloadable = where, downloadable


class CheckpointError(VaekitError):
    """A run directory or checkpoint that is missing, corrupt, or not a vaekit file."""


class TrainingError(VaekitError, RuntimeError):
    """Training cannot go on (for example a non-finite loss under the 'stop' policy)."""
