"""The command line starts fast: --help, --version and presets import neither torch nor scikit-learn, each
command's parser is built from its own module only when it is chosen, and output into a closed pipe
(``vaekit presets | head -1``) ends quietly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaekit.cli import COMMANDS, build_parser

SCRIPT = Path(sys.executable).with_name("vaekit")  # the console script pip installed beside this Python

# Runs main(argv) in a fresh interpreter; its last line of output names the heavy packages it imported.
PROBE = """
import json, sys
from vaekit.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "imported": [m for m in ("torch", "sklearn") if m in sys.modules]}))
"""


@pytest.mark.parametrize(
    "argv,heavy",
    [
        (["--help"], ["torch", "sklearn"]),
        (["--version"], ["torch", "sklearn"]),
        (["presets"], ["torch", "sklearn"]),
        (["-v", "presets"], ["torch", "sklearn"]),  # the command is found after vaekit's own options
        (["train", "--help"], ["sklearn"]),  # its choices come from the registries, which need torch
    ],
)
def test_light_commands_do_not_import_heavy_packages(argv, heavy):
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True)
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] in (0, None), proc.stderr
    assert not set(result["imported"]) & set(heavy), f"vaekit {' '.join(argv)} imported {result['imported']}"


def test_command_table_matches_the_modules():
    """``COMMANDS`` lists what the modules register, in order and with the same one-line help."""
    listed, built = build_parser(full=[]).format_help(), build_parser().format_help()
    assert listed == built


@pytest.mark.parametrize("name", list(COMMANDS))
def test_chosen_command_gets_its_full_parser(name, capsys):
    helps = []
    for parser in (build_parser(full=[name]), build_parser()):
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1] and helps[0].startswith(f"usage: vaekit {name} ")


@pytest.mark.parametrize("unbuffered", ["", "1"])  # stdout written at exit, or as each line is printed
@pytest.mark.parametrize("argv", [["--help"], ["presets"]])  # argparse's own output, and a command's
def test_closed_pipe_ends_quietly(argv, unbuffered):
    read, write = os.pipe()
    os.close(read)  # no reader: every write fails, as after `vaekit ... | head -1` has read its line
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    try:
        proc = subprocess.run([str(SCRIPT), *argv], stdout=write, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        os.close(write)
    # Python's own recipe exits 1; 0 where argparse had already dropped its help without a word
    assert proc.stderr == "" and proc.returncode in (0, 1)
