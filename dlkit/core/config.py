"""The config dataclass: the one place a command's option is defined.

Every option of every command is a field of its config dataclass, declared with `opt()`: its
default, its help, its bounds, its choices (an `Enum` type), its short flag and whether a
`--resume` must repeat it. Everything else is derived from the fields:

- the Typer command (`dlkit.options.command`) builds its parameters from them, so the CLI
  name, the help, the bounds and the choices cannot drift from the config;
- `Config.validate()` checks the same bounds when a config is made in Python;
- `TrainConfig.resume_settings()` is what a checkpoint must match to be resumed;
- `Config.as_dict()` is what `metadata.json` records as the run's settings.

No TensorFlow, no Typer here: `dlkit --help` imports every config.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dlkit.core.errors import UsageError

SEED_MAX = 2**32 - 1  # what keras.utils.set_random_seed (NumPy's seeding) accepts


@dataclass(frozen=True)
class Opt:
    """How one config field appears on the command line and in a resumed run."""

    help: str
    flags: tuple[str, ...] = ()  # extra flags (short forms, aliases) beside --field-name
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # the bound itself is not allowed (e.g. a rate > 0)
    max_open: bool = False
    resume: bool = True  # does --resume have to repeat the value (train commands)?
    argument: bool = False  # a positional argument instead of an option
    metavar: str | None = None
    name: str | None = None  # the CLI name when it differs from --field-name
    show_default: bool | str = True
    hidden: bool = False
    group: int = 1  # --help order: arguments, the command's own options (1), the shared
    # training options (2), the output options (3)


def opt(default: Any = dataclasses.MISSING, help: str = "", **meta: Any) -> Any:
    """A config field with its command-line metadata (see `Opt`)."""
    spec = Opt(help=help, **meta)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default),
                                 metadata={"opt": spec})
    return dataclasses.field(default=default, metadata={"opt": spec})


def spec_of(field: dataclasses.Field) -> Opt | None:
    return field.metadata.get("opt")


def cli_name(field: dataclasses.Field) -> str:
    spec = spec_of(field)
    return (spec.name if spec and spec.name else "--" + field.name.replace("_", "-"))


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field (the annotations are strings in these modules)."""
    return typing.get_type_hints(cls)


def base_type(annotation: Any) -> Any:
    """`int | None` -> int, `list[str]` -> str, `Path` -> Path."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return args[0] if args else str
    if args and origin is not None and len(args) == 1:
        return args[0]
    return annotation


def _describe_bounds(spec: Opt) -> str:
    parts = []
    if spec.min is not None:
        parts.append(f"{'>' if spec.min_open else '>='} {spec.min:g}")
    if spec.max is not None:
        parts.append(f"{'<' if spec.max_open else '<='} {spec.max:g}")
    return " and ".join(parts)


def check_value(name: str, value: Any, spec: Opt) -> None:
    """Exit 2 naming the option when `value` is outside its bounds (NaN and inf never pass a
    bounded float: they are not numbers a user means)."""
    if value is None or isinstance(value, (bool, str, Path, enum.Enum)):
        return
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        bad = isinstance(v, float) and not math.isfinite(v)
        if spec.min is not None:
            bad |= v <= spec.min if spec.min_open else v < spec.min
        if spec.max is not None:
            bad |= v >= spec.max if spec.max_open else v > spec.max
        if bad:
            raise UsageError(f"{name} must be {_describe_bounds(spec) or 'a finite number'} "
                             f"(got {v})")


@dataclass(kw_only=True)
class Config:
    """Options every command takes: the contract's output options."""

    COMMAND: ClassVar[str] = ""  # the command this config is for

    json: bool = opt(False, "Print one JSON object on stdout.", resume=False,
                     name="--json", group=3)
    quiet: bool = opt(False, "No progress or summary on stderr.", flags=("-q",),
                      resume=False, group=3)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Per-field bounds (as the CLI enforces them), then the command's own checks."""
        for field in dataclasses.fields(self):
            spec = spec_of(field)
            if spec is not None:
                check_value(cli_name(field), getattr(self, field.name), spec)
        self.check()

    def check(self) -> None:
        """Checks across fields (overridden by commands that have some)."""

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (Enums by value, paths as strings)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Strategy(enum.StrEnum):
    """The tf.distribute strategies a training command can run under."""

    auto = "auto"
    one_device = "one-device"
    mirrored = "mirrored"
    multi_worker = "multi-worker"


# The training options every train-* command shares (DESIGN.md's names), defined once; a
# command changes only a default, with `common(name, default)`.
_COMMON: dict[str, Opt] = {
    "epochs": Opt("Passes over the training set.", flags=("-e",), min=1, max=100_000),
    "batch_size": Opt("Examples per step (global: split across all replicas).",
                      flags=("-b",), min=1, max=65_536),
    "learning_rate": Opt("Peak learning rate.", flags=("--lr",), min=0, min_open=True),
    "seed": Opt("Random seed for weights, data order, augmentation and dropout.", min=0,
                max=SEED_MAX),
    "output": Opt("Model folder to write (an existing one is replaced only if dlkit wrote "
                  "it).", flags=("-o",), resume=False),
    "data_dir": Opt("Read the dataset from this folder only (default: $DLKIT_DATA, ./data, "
                    "~/.keras/datasets, /usr/share/datasets, then download).", resume=False),
    "limit": Opt("Use only the first N examples of each split (smoke runs).", min=1),
    "val_split": Opt("Fraction of the training data held out for validation.", min=0, max=1,
                     max_open=True),
    "max_minutes": Opt("Time budget for this session: the learning-rate schedule fits it and "
                       "training stops when it is spent (the model is still evaluated and "
                       "saved).", min=0, min_open=True, max=10_000_000, resume=False),
    "strategy": Opt("tf.distribute strategy: auto, one-device, mirrored (several local GPUs) "
                    "or multi-worker (several machines, TF_CONFIG).", resume=False),
    "deterministic": Opt("Deterministic kernels (same seed, same metrics; slower).",
                         resume=False),
    "resume": Opt("Continue an interrupted run from its checkpoint (same options).",
                  resume=False),
}


def common(name: str, default: Any, help: str | None = None) -> Any:
    """A shared training option with this command's default (and, rarely, its own help)."""
    spec = dataclasses.replace(_COMMON[name], group=2)
    if help is not None:
        spec = dataclasses.replace(spec, help=help)
    return dataclasses.field(default=default, metadata={"opt": spec})


@dataclass(kw_only=True)
class TrainConfig(Config):
    """Options every training command takes; a command redefines a field to change its
    default (`epochs: int = common("epochs", 20)`)."""

    epochs: int = common("epochs", 10)
    batch_size: int = common("batch_size", 128)
    learning_rate: float = common("learning_rate", 1e-3)
    seed: int = common("seed", 0)
    output: Path = common("output", Path("models/model"))
    max_minutes: float | None = common("max_minutes", None)
    strategy: Strategy = common("strategy", Strategy.auto)
    deterministic: bool = common("deterministic", False)
    resume: bool = common("resume", False)

    def resume_settings(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed: every option that shapes the recipe."""
        settings = {"command": self.COMMAND}
        for field in dataclasses.fields(self):
            spec = spec_of(field)
            if spec is not None and spec.resume:
                settings[field.name] = _plain(getattr(self, field.name))
        return settings

    @classmethod
    def option_of(cls, name: str) -> str:
        """The CLI spelling of field `name` (for messages)."""
        return cli_name(next(f for f in dataclasses.fields(cls) if f.name == name))
