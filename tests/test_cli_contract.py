"""The command-line contract every command shares: instant help, version, exit codes."""

from __future__ import annotations

import subprocess
import sys

from conftest import run_dlkit


def test_help_does_not_import_tensorflow() -> None:
    code = ("import sys\n"
            "from dlkit.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "for cmd in ('train-mnist', 'train-cifar', 'datasets'):\n"
            "    try:\n        app([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'NOTF')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("NOTF")


def test_python_m_dlkit_help_lists_commands() -> None:
    result = run_dlkit("--help")
    assert result.returncode == 0
    for command in ("train-mnist", "train-cifar", "datasets"):
        assert command in result.stdout


def test_version() -> None:
    result = run_dlkit("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("dlkit ")


def test_unknown_option_is_usage_error() -> None:
    result = run_dlkit("train-mnist", "--no-such-option")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: No such option: --no-such-option; see "
                                     "'dlkit train-mnist --help'")
