"""Presets: the literature's configurations, shipped as data (one JSON file per preset in this folder).

A preset file holds what it reproduces and the settings, a partial ``RunConfig`` (missing fields keep
their defaults)::

    {"description": "...", "reproduces": "...", "literature_nll": 88.56, "literature_source": "...",
     "pythae_nll": 89.78, "config": {"data": {...}, "model": {...}, "train": {...}}}

``vaekit train --preset NAME`` starts from ``load(NAME).config()`` (flags override it); ``vaekit presets``
lists them. The data folder is not part of a preset: give ``--data-dir`` (or ``$VAEKIT_DATA_DIR``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from vaekit.errors import ConfigError

if TYPE_CHECKING:  # vaekit.config loads torch; listing the presets does not need it
    from vaekit.config import RunConfig

_KEYS = {"description", "reproduces", "literature_nll", "literature_source", "pythae_nll", "config"}


@dataclass(frozen=True)
class Preset:
    """One preset file.

    name: the file's name without ``.json``. description: what the model is, in a line.
    reproduces: the paper and table row it reproduces. literature_nll / pythae_nll: the test NLL in
    nats the paper / pythae's reproduction report (None: none). literature_source: where the paper's
    number is. settings: the partial ``RunConfig`` as a dict.
    """

    name: str
    description: str
    reproduces: str
    literature_nll: float | None
    literature_source: str
    pythae_nll: float | None
    settings: dict[str, Any]

    def config(self) -> RunConfig:
        """A fresh ``RunConfig`` with the preset's settings over the defaults."""
        from vaekit.config import RunConfig

        return RunConfig.from_dict(json.loads(json.dumps(self.settings)))


def names() -> list[str]:
    """The shipped presets' names, sorted."""
    return sorted(p.name[: -len(".json")] for p in resources.files(__name__).iterdir() if p.name.endswith(".json"))


def load(name: str) -> Preset:
    """The preset ``name``; a ``ConfigError`` listing the choices if there is none."""
    if name not in names():
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(names())}")
    raw = json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))
    unknown, missing = sorted(set(raw) - _KEYS), sorted(_KEYS - set(raw))
    if unknown or missing:
        raise ConfigError(f"preset {name}: unknown key(s) {unknown}, missing key(s) {missing}")
    return Preset(
        name=name,
        description=raw["description"],
        reproduces=raw["reproduces"],
        literature_nll=raw["literature_nll"],
        literature_source=raw["literature_source"],
        pythae_nll=raw["pythae_nll"],
        settings=raw["config"],
    )
