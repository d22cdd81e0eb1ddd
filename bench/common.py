"""What the bench scripts share."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
from pathlib import Path


def write_results(path: str | Path, results: dict) -> None:
    """Write a script's results as indented JSON (creating the folder) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {path}")


def read_cells(path: Path) -> dict:
    """A cell-by-cell results file ({"cells": {key: record}}), or an empty one."""
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def save_cell(path: Path, key: str, record: dict) -> None:
    """Put one cell's record into the results file ``path`` (the others kept) and print it.

    Several bench processes may fill one file (cells run side by side): the read, update and write
    happen under an exclusive lock on a sibling ``.lock`` file, and the new text replaces the old
    in one rename, so no cell is lost and no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = read_cells(path)
        results["cells"][key] = record
        staged = path.with_name(path.name + ".tmp")
        staged.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(staged, path)
    print(f"{key}: {json.dumps(record)}")


def train_for(command: list[str], seconds: float | None) -> bool:
    """Run a ``vaekit train`` command; after ``seconds`` (None: no limit) stop it as Ctrl-C does, so
    the run saves its checkpoint and resumes later. True when the limit stopped it."""
    if seconds is not None and seconds <= 0:
        return True
    proc = subprocess.Popen(command)
    try:
        code = proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait()
        return True
    if code:
        raise subprocess.CalledProcessError(code, command)
    return False
