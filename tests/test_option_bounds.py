"""Every bound and every choice of every option of every command is refused (issue 29).

Read off the config dataclasses (`dlkit.cli.COMMANDS`), so a new option or a new bound is
covered without touching this file: for each numeric option with a bound, values just and far
outside it (the open bound itself, a negative value below a bound of 0 or more, ten times
an upper bound, and every value of LITERALS outside it), NaN and infinities for floats, and
words that are not numbers; for each
option whose type is a set of choices (an Enum), a value that is none of them. Each one is
the usage error of docs/design.md#exit-codes: exit 2, exactly one `error:` line that names
the option, no traceback, nothing on stdout and nothing written. The command's other arguments are
placeholders (files that do not exist): an option is checked before any input is opened.

The hand-written rows of tests/test_bad_input.py keep the cases that are more than a bound
(a bad option beside an existing output, bounds that depend on another option or the model).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from pathlib import Path

import pytest
from conftest import assert_one_error_line
from test_bad_input import snapshot

from dlkit.cli import COMMANDS
from dlkit.core.config import base_type, cli_name, field_types, spec_of

CONFIGS = {config_type.COMMAND: config_type for config_type, _, _ in COMMANDS}


def _number(value: float, kind: type) -> str:
    if kind is int:
        return str(int(value))
    return repr(float(value)) if math.isfinite(value) else str(value)


# Values the hand-written rows used to try (tests/test_bad_input.py): each is tried on every
# numeric option it is outside the bounds of, beside the values derived from the bounds.
LITERALS = ("0", "-1", "-3", "-5", "-8", "-0.1", "-0.5", "1", "1.5", "2", "4", "100", "1000",
            "100000", "1000000", "100000000", "4294967296")


def _outside(value: float, spec: typing.Any) -> bool:
    low = spec.min is not None and (value <= spec.min if spec.min_open else value < spec.min)
    high = spec.max is not None and (value >= spec.max if spec.max_open else value > spec.max)
    return low or high


def refused_values(kind: type, spec: typing.Any) -> list[str]:
    """Values outside the option's bounds, as a user would type them."""
    values = [v for v in LITERALS if (kind is float or "." not in v) and _outside(float(v), spec)]
    step = 1 if kind is int else 0.001
    if spec.min is not None:
        low = spec.min
        values += [_number(low - step, kind), _number(low - 1, kind)]
        if spec.min_open:
            values.append(_number(low, kind))
        if low >= 0:
            values.append(_number(-3 - abs(low) * 2, kind))  # negative
    if spec.max is not None:
        high = spec.max
        values += [_number(high + step, kind), _number(high * 10 + 1, kind)]
        if spec.max_open:
            values.append(_number(high, kind))
    if kind is float:
        values += ["nan", "inf", "-inf"]
    values += ["many", "1e20" if kind is int else "1.5.2"]  # not numbers of this kind
    return list(dict.fromkeys(values))


def cases(command: str) -> list[tuple[str, tuple[str, ...]]]:
    """(option, words that set it to a refused value) for every bounded or Enum option."""
    config_type = CONFIGS[command]
    types = field_types(config_type)
    found = []
    for field in dataclasses.fields(config_type):
        spec = spec_of(field)
        if spec is None or spec.argument:
            continue
        annotation = types[field.name]
        kind = base_type(annotation)
        if typing.get_origin(kind) in (tuple, list):  # tuple[int, int] | None
            kind = base_type(kind)
        name = cli_name(field)
        arity = next((len(typing.get_args(a)) for a in (annotation, *typing.get_args(annotation))
                      if typing.get_origin(a) is tuple), 1)  # tuple[int, int] | None: 2
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            found.append((name, (name, "no-such-choice")))
        elif kind in (int, float) and (spec.min is not None or spec.max is not None):
            for value in refused_values(kind, spec):
                found.append((name, (name, *[value] * arity)))
    return found


def placeholders(command: str, tmp_path: Path) -> list[str]:
    """The command's required arguments and options, set to inputs that do not exist, and an
    output in the scratch folder."""
    config_type = CONFIGS[command]
    words: list[str] = []
    for field in dataclasses.fields(config_type):
        spec = spec_of(field)
        required = (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING)
        if spec is None or not required:
            continue
        value = str(tmp_path / "nowhere" / field.name)
        words += [value] if spec.argument else [cli_name(field), value]
    if "output" in {f.name for f in dataclasses.fields(config_type)}:
        words += ["-o", str(tmp_path / "out")]
    return words


def test_every_command_has_bounded_options() -> None:
    """The generic test below reaches the commands' options (a rename would make it vacuous)."""
    counted = {command: len(cases(command)) for command in CONFIGS}
    assert sum(counted.values()) > 500, counted
    for command in CONFIGS:
        if command not in ("datasets",):
            assert counted[command] >= 1, command
    assert ("--epochs", ("--epochs", "0")) in cases("train-mnist")
    assert ("--learning-rate", ("--learning-rate", "0.0")) in cases("train-text")
    assert ("--strategy", ("--strategy", "no-such-choice")) in cases("train-gan")
    assert ("--input-size", ("--input-size", "0", "0")) in cases("classify-image")


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_out_of_bounds_and_unknown_choices_are_refused(command: str, cli, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative default output would land in the scratch folder
    base = placeholders(command, tmp_path)
    before = snapshot(tmp_path)
    for option, words in cases(command):
        result = cli(command, *base, *words, env={"DLKIT_DATA": ""})
        assert result.exit_code == 2, (words, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            (words, repr(result.exception))
        assert_one_error_line(result.stderr)
        error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
        assert option in error, (words, error)
        assert result.stdout == "", words
        assert snapshot(tmp_path) == before, f"{words} wrote files"
