"""The settings' flags of ``vaekit train``, from one description: the ``flag`` metadata of the fields of
``DataConfig``, ``ModelConfig`` and ``TrainConfig`` (``vaekit.config.flag``). The same description builds
the argparse groups and reads the parsed values back into a ``RunConfig``.

Every flag's default is None: a flag left out leaves the config it is applied to (the defaults, a
preset or a ``--config`` file) alone. Its value is kept under its own name (``args.dataset``), as
argparse would name it, so the parsed arguments read as the command line does.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaekit.cli.common import positive_int
from vaekit.config import RunConfig
from vaekit.corruption import CORRUPTIONS
from vaekit.data.base import dataset_names
from vaekit.models import ACTIVATIONS, CONDITIONS, ENCODERS, FLOWS, HIERARCHIES, LIKELIHOODS, MODEL_KINDS, PRIORS
from vaekit.objectives import OBJECTIVES

# The registries a field's ``choices`` or ``names`` may name: config.py cannot import them (they build on it).
REGISTRIES: dict[str, Callable[[], list[str]]] = {
    "datasets": dataset_names,
    "model kinds": MODEL_KINDS.names,
    "architectures": ENCODERS.names,
    "hierarchies": HIERARCHIES.names,
    "activations": ACTIVATIONS.names,
    "likelihoods": LIKELIHOODS.names,
    "priors": PRIORS.names,
    "flows": lambda: ["none", *FLOWS.names()],
    "conditions": lambda: ["none", *CONDITIONS.names()],
    "objectives": OBJECTIVES.names,
    "corruptions": CORRUPTIONS.names,
}

GROUPS = {"data": "data", "model": "model", "train": "objective and optimisation"}  # RunConfig's section -> its --help group


@dataclass(frozen=True)
class SettingFlag:
    """The flag ``option`` of the field ``name`` of RunConfig's ``section``; argparse keeps its value as ``dest``."""

    section: str
    name: str
    option: str
    dest: str
    spec: dict[str, Any]  # the field's ``flag`` metadata
    hint: Any  # the field's type
    default: Any

    @property
    def key(self) -> tuple[str, str]:
        """(section, field), as ``vaekit.settings.TAKES_EFFECT`` names a setting."""
        return self.section, self.name


@functools.cache
def setting_flags() -> tuple[SettingFlag, ...]:
    """Every settings field that has a flag, section by section, each in its dataclass's order."""
    flags = []
    for section, cls in typing.get_type_hints(RunConfig).items():
        if not dataclasses.is_dataclass(cls):
            continue  # version
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            spec = f.metadata["flag"]  # every field says how it is set (tests/test_cli_settings_flags.py checks it)
            if spec is None:
                continue
            name = spec["name"] or f.name.replace("_", "-")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            flags.append(SettingFlag(section, f.name, f"--{name}", name.replace("-", "_"), spec, hints[f.name], default))
    return tuple(flags)


def add_setting_arguments(
    parser: argparse.ArgumentParser, after: dict[str, Callable[[argparse._ArgumentGroup], object]] | None = None
) -> None:
    """The settings' flags, in one argument group per section (``GROUPS``). after: field -> a function
    that adds the command's own flags to that field's group, after its flag (``--iw-samples`` after
    ``--samples``)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in setting_flags():
        if flag.section not in groups:
            groups[flag.section] = parser.add_argument_group(GROUPS[flag.section])
        group = groups[flag.section]
        group.add_argument(flag.option, **argparse_options(flag))
        if after and flag.name in after:
            after[flag.name](group)


def argparse_options(flag: SettingFlag) -> dict[str, Any]:
    """The keyword arguments of ``add_argument`` for ``flag``: its type and number of values from the
    field's type, unless its metadata says otherwise."""
    spec, hint = flag.spec, _without_none(flag.hint)
    options: dict[str, Any] = {"default": None, "help": help_text(flag)}
    if hint is bool:
        return options | {"action": argparse.BooleanOptionalAction if spec["negatable"] else "store_true"}
    item, nargs = hint, None
    if typing.get_origin(hint) is tuple:  # tuple[int, ...]: one or more values; tuple[float, float]: two
        args = typing.get_args(hint)
        item, nargs = args[0], "+" if args[-1] is Ellipsis else len(args)
    if item is not str:
        options["type"] = positive_int if spec["positive"] else item
    for key, value in (("nargs", spec["nargs"] or nargs), ("metavar", spec["metavar"])):
        if value is not None:
            options[key] = value
    if spec["choices"] is not None:
        options["choices"] = _names(spec["choices"])
    return options


def help_text(flag: SettingFlag) -> str:
    """The flag's help, with ``{default}`` and ``{names}`` filled in."""
    text, values = flag.spec["help"], {}
    if "{default}" in text:
        value = flag.default
        values["default"] = "default " + (" ".join(map(str, value)) if isinstance(value, tuple) else str(value))
    if "{names}" in text:
        values["names"] = ", ".join(_names(flag.spec["choices"] or flag.spec["names"]))
    return text.format(**values)


def apply_setting_flags(args: argparse.Namespace, config: RunConfig) -> None:
    """Set in ``config`` each setting whose flag ``args`` holds a value of (a list as a tuple)."""
    for flag in setting_flags():
        value = getattr(args, flag.dest)
        if value is not None:
            setattr(getattr(config, flag.section), flag.name, tuple(value) if isinstance(value, list) else value)


def _names(choices: str | tuple[str, ...]) -> list[str]:
    return REGISTRIES[choices]() if isinstance(choices, str) else list(choices)


def _without_none(hint: Any) -> Any:
    """``X`` for ``X | None``; any other type as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint
