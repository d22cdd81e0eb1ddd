"""What the bench scripts share."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(path: str | Path, results: dict) -> None:
    """Write a script's results as indented JSON (creating the folder) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path}")
