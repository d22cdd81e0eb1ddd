"""``vaekit presets``: the shipped presets and what each reproduces; ``vaekit presets NAME`` prints one's settings."""

from __future__ import annotations

import argparse
import json

import vaekit.presets as presets


def register(sub) -> None:
    p = sub.add_parser(
        "presets",
        help="list the literature's configurations shipped with vaekit (vaekit train --preset NAME)",
        description="List the presets: the literature's configurations, each with what it reproduces and its published "
        "test NLL. With NAME, print that preset's settings as JSON (train it with vaekit train --preset NAME).",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="print this preset's settings")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        preset = presets.load(args.name)
        print(json.dumps(preset.config().to_dict(), indent=2))
        return 0
    for name in presets.names():
        preset = presets.load(name)
        values = [
            f"{label} {value:.2f} nats"
            for label, value in (("paper", preset.literature_nll), ("pythae", preset.pythae_nll))
            if value is not None
        ]
        print(f"{name}\n    {preset.description}\n    reproduces: {preset.reproduces}")
        print(f"    test NLL: {', '.join(values) if values else 'no published value'}")
    return 0
