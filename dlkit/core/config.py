"""The config dataclass: the one place a command's option is defined.

Every option of every command is a field of its config dataclass, declared with `opt()`: its
default, its help, its bounds, its choices (an `Enum` type), its short flag and whether a
`--resume` must repeat it. Everything else is derived from the fields:

- the Typer command (`dlkit.options.command`) builds its parameters from them, so the CLI
  name, the help, the bounds and the choices cannot drift from the config;
- `Config.validate()` checks the same bounds when a config is made in Python;
- `TrainConfig.resume_settings()` is what a checkpoint must match to be resumed;
- `Config.as_dict()` is what `metadata.json` records as the run's settings, by the same keys
  as a config file (`settings`), so a model's settings can be fed back with `--config`.

No TensorFlow, no Typer here: `dlkit --help` imports every config.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dlkit.core.errors import UsageError
from dlkit.core.files import MiB, read_bytes

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


def help_order(config_type: type) -> list[dataclasses.Field]:
    """The fields that are options or arguments, in `--help`'s order: the arguments, then the
    command's own options (group 1), the shared training options (2) and the output options
    (3), each in the config's field order."""
    fields = [f for f in dataclasses.fields(config_type) if spec_of(f) is not None]
    return sorted(fields, key=lambda f: 0 if spec_of(f).argument else spec_of(f).group)


def _number_text(value: float) -> str:
    """A bound as typed: whole numbers exactly (4294967295, not 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def describe_bounds(spec: Opt) -> str:
    """An option's bounds in words, as error messages and the reference pages give them
    (">= 1 and <= 100000", "> 0"); empty when it has none."""
    parts = []
    if spec.min is not None:
        parts.append(f"{'>' if spec.min_open else '>='} {_number_text(spec.min)}")
    if spec.max is not None:
        parts.append(f"{'<' if spec.max_open else '<='} {_number_text(spec.max)}")
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
            raise UsageError(f"{name} must be {describe_bounds(spec) or 'a finite number'} "
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
        """The settings as metadata.json records them: plain JSON values by config-file key
        (Enums by value, paths as given but `READ_BACK` ones made absolute), so a model's
        settings can be fed back as a `--config` file (see `settings`)."""
        return settings(self, resolve=True)


def plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Strategy(enum.StrEnum):
    """The tf.distribute strategies a training command can run under."""

    auto = "auto"
    one_device = "one-device"
    mirrored = "mirrored"
    multi_worker = "multi-worker"


class Precision(enum.StrEnum):
    """What a training command computes in (see dlkit.core.precision)."""

    auto = "auto"
    float32 = "float32"
    mixed = "mixed"


class ClassWeight(enum.StrEnum):
    """How training examples of each class are weighted."""

    none = "none"
    balanced = "balanced"


class Backend(enum.StrEnum):
    """The engine that runs a trained model for inference."""

    auto = "auto"
    litert = "litert"
    tensorflow = "tensorflow"


class SamplerKind(enum.StrEnum):
    """How a text generator picks each token: random (the whole distribution), top-k, top-p
    (nucleus), or greedy (always the likeliest; see dlkit.core.sampling)."""

    random = "random"
    top_k = "top-k"
    top_p = "top-p"
    greedy = "greedy"


class Quantize(enum.StrEnum):
    """How `dlkit export` shrinks a LiteRT file."""

    none = "none"  # float32: the same results as TensorFlow
    dynamic = "dynamic"  # int8 weights, float activations
    int8 = "int8"  # int8 weights and activations, calibrated on training inputs


def backend_option() -> Any:
    """The `--backend` option of every command that serves a trained model."""
    return opt(Backend.auto, "Inference engine: litert (the folder's .tflite file, run "
               "without TensorFlow: starts in a fraction of a second), tensorflow, or auto "
               "(litert when the model folder has a .tflite file).")


def class_weights(labels: Any, classes: int, how: ClassWeight) -> list[float]:
    """One weight per class: all 1, or scikit-learn's "balanced" (n / (classes x count))."""
    if how == ClassWeight.none:
        return [1.0] * classes
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=np.asarray(labels))
    out = [1.0] * classes
    for k, w in zip(present, weights, strict=True):
        out[int(k)] = float(w)
    return out


# The training options every train-* command shares (docs/design.md#shared-option-names),
# defined once; a command changes only a default, with `common(name, default)`.
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
    "precision": Opt("What training computes in: auto (mixed float16 on a GPU, mixed bfloat16 on "
                     "a CPU with native bfloat16 such as AVX512-BF16 or AMX, where it is about "
                     "twice as fast; float32 otherwise), float32, or mixed. Weights stay "
                     "float32, and the saved model computes in float32 either way."),
    "resume": Opt("Continue an interrupted run from its checkpoint (same options).",
                  resume=False),
    "tensorboard": Opt("Write TensorBoard event files here: per-epoch losses, metrics and "
                       "learning rate (and sample images for the GAN and VAE); view them "
                       "with `tensorboard --logdir DIR`.", resume=False),
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
    precision: Precision = common("precision", Precision.auto)
    resume: bool = common("resume", False)
    tensorboard: Path | None = common("tensorboard", None)

    def resume_settings(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed: every option that shapes the recipe."""
        settings = {"command": self.COMMAND}
        for field in dataclasses.fields(self):
            spec = spec_of(field)
            if spec is not None and spec.resume:
                settings[field.name] = plain(getattr(self, field.name))
        return settings

    @classmethod
    def option_of(cls, name: str) -> str:
        """The CLI spelling of field `name` (for messages)."""
        return cli_name(next(f for f in dataclasses.fields(cls) if f.name == name))


# ---------------------------------------------------------------------------------------------
# Config files: TOML whose keys are the long option names (`learning-rate = 0.004`)
#
# A config file is read the way the command line is: a path that is not UTF-8 keeps its bytes
# (`--print-config` writes them as they are, and they come back as the same path), and an empty
# path is refused in both. It is untrusted input: a regular file of at most MAX_CONFIG_BYTES.

MAX_CONFIG_BYTES = MiB  # a settings file is a few hundred bytes


def option_key(field: dataclasses.Field) -> str:
    """A field's key in a config file: its long option name without the dashes."""
    return cli_name(field)[2:]


def file_fields(config_type: type[Config]) -> list[dataclasses.Field]:
    """The fields a config file (and `--print-config`, and metadata.json) holds: every option
    but the per-run output switches (--json, --quiet) and the positional arguments."""
    return [f for f in dataclasses.fields(config_type) if spec_of(f) is not None
            and not spec_of(f).argument and f.name not in ("json", "quiet")]


def read_config_file(path: Path | str, config_type: type[Config]) -> dict[str, Any]:
    """The settings of a TOML config file as {field name: value}, each checked against its
    field's type and choices; exit 2 naming the file and the key for anything wrong."""
    table = _read_toml(Path(path), f"`dlkit {config_type.COMMAND} --print-config > run.toml` "
                       "writes one")
    fields = {option_key(f): f for f in file_fields(config_type)}
    types = field_types(config_type)
    settings = {}
    for key, value in table.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(sorted(fields))
            raise UsageError(f"{path}: unknown key {key!r} for {config_type.COMMAND} (keys: "
                             f"{known})")
        settings[field.name] = _checked_value(path, key, value, types[field.name])
        check_value(f"{path}: {key}", settings[field.name], spec_of(field))
    return settings


def _read_toml(path: Path, hint: str) -> dict[str, Any]:
    """The table of a TOML file that is a regular file of at most MAX_CONFIG_BYTES (read by
    `read_bytes`: a FIFO or a device such as /dev/zero is refused before it is read); bytes
    that are not UTF-8 are kept as Python keeps them in file names (`surrogateescape`), as on
    the command line."""
    raw = read_bytes(path, "config file", hint, limit=MAX_CONFIG_BYTES)
    try:
        table = tomllib.loads(raw.decode("utf-8", "surrogateescape"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML ({exc})") from None
    except RecursionError:  # thousands of nested arrays
        raise UsageError(f"config file {path} is nested too deeply to be a settings file") \
            from None
    return table


def _checked_value(path: Path | str, key: str, value: Any, annotation: Any) -> Any:
    kind = base_type(annotation)
    if isinstance(annotation, types.UnionType):  # `X | None`: look at X
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(
                v, bool) for v in value):
            raise UsageError(f"{path}: {key} must be a list of integers (got {value!r})")
        return tuple(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{path}: {key} must be a list of strings (got {value!r})")
        return value
    wanted = {bool: (bool,), int: (int,), float: (int, float)}.get(kind, (str,))
    if not isinstance(value, wanted) or (kind in (int, float) and isinstance(value, bool)):
        name = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")
        raise UsageError(f"{path}: {key} must be {name} (got {value!r})")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = [m.value for m in kind]
        if value not in choices:
            raise UsageError(f"{path}: {key} must be one of {', '.join(choices)} (got "
                             f"{value!r})")
        return kind(value)
    if kind is Path:
        return path_value(value, f"{path}: {key}")
    return float(value) if kind is float else value


EMPTY_PATH = "an empty path; give a path, or leave the option out"


def path_value(text: str, where: str) -> Path:
    """A path option's value; an empty one is refused (Python would read it as ".", the
    working directory, which nobody means by an empty string): leave the option out instead."""
    if text == "":
        raise UsageError(f"{where} is {EMPTY_PATH}")
    return Path(text)


# Path settings a later command reads back from metadata.json, from any working directory:
# `export --quantize int8` finds its calibration images through the training's --data-dir. The
# others (the output folder, TensorBoard's) are recorded as the user gave them, not as absolute
# paths of the machine that trained the model.
READ_BACK = frozenset({"data_dir"})


def settings(config: Config, resolve: bool = False) -> dict[str, Any]:
    """The config as a config file holds it: {key: plain value} by long option name, None for
    an unset option; with `resolve`, the `READ_BACK` paths made absolute (for metadata.json,
    read later from anywhere)."""
    out = {}
    for field in file_fields(type(config)):
        value = getattr(config, field.name)
        if resolve and isinstance(value, Path) and field.name in READ_BACK:
            value = value.expanduser().resolve()
        out[option_key(field)] = plain(value)
    return out


def recorded_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """A model's recorded settings (metadata.json's "config") by config-file key, whichever
    spelling the folder has: `batch-size` (now) or `batch_size` (folders written before)."""
    recorded = meta.get("config")
    if not isinstance(recorded, dict):
        return {}
    return {str(key).replace("_", "-"): value for key, value in recorded.items()}


def to_toml(config: Config) -> str:
    """The resolved settings as a TOML config file (`dlkit CMD --print-config > run.toml`):
    every option with a value, by long option name; unset ones as comments. Reading it back
    with --config gives the same settings, whatever characters its paths hold."""
    lines = [f"# dlkit {config.COMMAND} settings (dlkit {config.COMMAND} --config FILE)"]
    values = settings(config)
    for field in sorted(file_fields(type(config)), key=lambda f: spec_of(f).group):
        key = option_key(field)  # in --help's order
        value = values[key]
        lines.append(f"# {key} = (not set)" if value is None else f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # Python's float spellings (1e-05, inf, nan) are TOML's too
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return toml_string(str(value))


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: quotes, backslashes and control characters escaped, every
    other character as itself (astral ones included: TOML takes no surrogate-pair escapes). A
    byte that is not UTF-8 (kept by Python as a lone surrogate) stays a lone surrogate here,
    for the output stream to write as the byte it was (see `_read_toml`)."""
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
