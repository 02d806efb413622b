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


def test_result_tables_in_a_pipe_are_whole_tab_separated_lines() -> None:
    """Issue 24: `dlkit models` piped cut 207 of 280 preset names to "…". In a pipe or a file a
    table is tab-separated lines under a header, every cell whole."""
    import json

    piped = run_dlkit("models")
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0].split("\t") == ["name", "kind", "family", "parameters", "cached"]
    names = [line.split("\t")[0] for line in lines[1:]]
    assert all(len(line.split("\t")) == 5 for line in lines[1:])
    expected = [m["name"] for m in json.loads(run_dlkit("models", "--json").stdout)["models"]]
    assert names == expected and len(names) > 100
    assert "…" not in piped.stdout


def test_datasets_paths_are_whole_in_a_pipe(tiny_root, tmp_path) -> None:
    """`dlkit datasets` cut paths at 80 columns: a long --data-dir comes out whole (and a
    character that would be rich markup shows as typed)."""
    import shutil

    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "[red]data[/red]"
    shutil.copytree(tiny_root, deep)
    piped = run_dlkit("datasets", "--data-dir", deep)
    assert piped.returncode == 0, piped.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in piped.stdout.splitlines()[1:]}
    assert rows["mnist"][2].startswith(str(deep)) and "…" not in piped.stdout


def test_result_tables_on_a_narrow_terminal_fold_instead_of_cutting() -> None:
    """On a terminal the table is rich's, its long cells folded onto more lines, never "…"."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        process = subprocess.run([sys.executable, "-m", "dlkit", "datasets"], stdout=follower,
                                 stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "40"},
                                 timeout=120)
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is closed once everything is read
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
    text = output.decode()
    assert process.returncode == 0 and "┃" in text  # rich's table, not tab-separated lines
    assert "…" not in text
