"""The `dlkit` command line: the Typer app, the one-line error mapping, `main()`.

Each command is one row of `COMMANDS`: its config dataclass (which defines every option, see
`dlkit.core.config`) and the function that runs it. Typer's parameters are built from the config
(`dlkit.options`), the config is made and checked from the parsed values, and only then is the
command's module imported, so `dlkit --help`, shell completion and bad options never wait for
TensorFlow. Failures become one `error:` line and its exit code here, in `run_command` (see
docs/design.md#exit-codes).
"""

from __future__ import annotations

import faulthandler
import functools
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dlkit.core import console
from dlkit.core.config import Config, to_toml
from dlkit.core.errors import EXIT_FAILURE, EXIT_INTERRUPTED, DlkitError, first_line
from dlkit.core.evaluation import EvaluateConfig
from dlkit.data.catalog import DatasetsConfig
from dlkit.export.config import ExportConfig
from dlkit.flow.config import FlowConfig, SampleFlowConfig
from dlkit.gan.config import EvaluateGanConfig, GanConfig, SampleGanConfig
from dlkit.image_classifier.config import CifarConfig, ClassifyImageConfig, MnistConfig
from dlkit.options import command_function
from dlkit.pretrained.catalog import ModelsConfig
from dlkit.sequence.config import ForecastConfig, SequenceConfig
from dlkit.serve.config import ServeConfig
from dlkit.text.config import GenerateConfig, TextConfig
from dlkit.text_classifier.config import ClassifyTextConfig, TextClassifierConfig
from dlkit.vae.config import SampleVaeConfig, VaeConfig

# (config, "module:function" that runs it, whether it starts TensorFlow itself or not at all)
COMMANDS: list[tuple[type[Config], str, bool]] = [
    (DatasetsConfig, "dlkit.data.catalog:list_datasets", False),
    (MnistConfig, "dlkit.image_classifier.train:train_mnist", True),
    (CifarConfig, "dlkit.image_classifier.train:train_cifar", True),
    (ClassifyImageConfig, "dlkit.image_classifier.classify:classify_images", False),
    (TextConfig, "dlkit.text.train:train_text", True),
    (GenerateConfig, "dlkit.text.generate:generate_text", False),
    (GanConfig, "dlkit.gan.train:train_gan", True),
    (SampleGanConfig, "dlkit.gan.sample:sample_gan", False),
    (EvaluateGanConfig, "dlkit.gan.evaluate:evaluate_gan", True),
    (FlowConfig, "dlkit.flow.train:train_flow", True),
    (SampleFlowConfig, "dlkit.flow.sample:sample_flow", False),
    (VaeConfig, "dlkit.vae.train:train_vae", True),
    (SampleVaeConfig, "dlkit.vae.sample:sample_vae", False),
    (SequenceConfig, "dlkit.sequence.train:train_sequence", True),
    (ForecastConfig, "dlkit.sequence.forecast:forecast", False),
    (TextClassifierConfig, "dlkit.text_classifier.train:train_text_classifier", True),
    (ClassifyTextConfig, "dlkit.text_classifier.classify:classify_text", True),
    (EvaluateConfig, "dlkit.core.evaluation:evaluate", False),
    (ExportConfig, "dlkit.export.export:export", True),
    (ModelsConfig, "dlkit.pretrained.catalog:list_models", False),
    (ServeConfig, "dlkit.serve.server:serve", False),
]


def _is_usage_error(exc: BaseException) -> bool:
    """Typer's parser errors (Click's ClickException family, which Typer 0.2x vendors in a
    private module) are recognised by their public interface rather than imported."""
    return callable(getattr(exc, "format_message", None)) and isinstance(
        getattr(exc, "exit_code", None), int)


class _OneLineUsageErrors(TyperGroup):
    """Typer's command group, with Typer's own usage errors (an unknown option, a value that is
    not a number, a missing argument) printed as the one `error: ...` line of
    docs/design.md#errors, exit 2, instead of a multi-line panel: scripts and logs get one
    greppable line."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if not _is_usage_error(exc):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # `dlkit` alone: help is shown
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            # Typer 0.2x words a bad choice "Value error, 'x' is not one of ...": drop the
            # validation library's prefix.
            message = exc.format_message().rstrip(".").replace(": Value error, ", ": ")
            console.error_line(f"{message}{hint}")
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="dlkit",
    cls=_OneLineUsageErrors,
    help="The classic Keras deep-learning examples as real command-line tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")]
    = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=lambda value: _print_version(value),
                                          is_eager=True)] = False,
) -> None:
    """The classic Keras deep-learning examples as real command-line tools."""
    global _debug
    _debug = debug or os.environ.get("DLKIT_DEBUG", "") not in ("", "0")
    if _debug:
        os.environ["DLKIT_DEBUG"] = "1"


def _print_version(value: bool) -> None:
    if value:
        from dlkit import __version__

        typer.echo(f"dlkit {__version__}")
        raise typer.Exit()


def run_command(body: Callable[[], int | None]) -> int:
    """Run a command body, mapping failures to one `error:` line and the exit codes of
    docs/design.md#exit-codes."""
    try:
        return int(body() or 0)
    except DlkitError as exc:
        _report(exc.message)
        return exc.code
    except KeyboardInterrupt:
        _report("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        _report(f"{type(exc).__name__}: {first_line(exc)}; rerun with --debug for the "
                "traceback")
        return EXIT_FAILURE
    finally:
        from dlkit.core.artifacts import release_output_locks

        release_output_locks()


def _report(message: str) -> None:
    if _debug:
        traceback.print_exc(file=sys.stderr)
    console.error_line(message)


def _run(target: str, tensorflow: bool, config_type: type[Config], values: dict[str, Any],
         print_config: bool) -> int:
    """Make the config from the parsed values (bad values: exit 2, before any import), import
    TensorFlow quietly when the command needs it, run the command, print its report. With
    `--print-config`, print the resolved settings instead of running."""
    console.set_quiet(bool(values.get("quiet")))

    def body() -> int:
        config = config_type(**values)
        if print_config:
            sys.stdout.write(to_toml(config))
            return 0
        if tensorflow:
            from dlkit.core.runtime import import_tensorflow

            import_tensorflow()
        module, name = target.split(":")
        outcome = getattr(importlib.import_module(module), name)(config)
        if isinstance(outcome, console.Report):
            outcome.show(config.json)
            return outcome.code
        return int(outcome or 0)

    return run_command(body)


for _config, _target, _tensorflow in COMMANDS:
    app.command(_config.COMMAND)(command_function(
        _config, functools.partial(_run, _target, _tensorflow), run_command))


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: staging folders are removed, exit 130


def main() -> None:
    """Console-script entry point."""
    console.open_standard_streams()
    faulthandler.enable()  # a crash in native code still leaves a Python stack on stderr
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(prog_name="dlkit")
    except SystemExit as exc:
        if exc.code != EXIT_INTERRUPTED:
            raise
        # Cut mid-step, TensorFlow's background threads (tf.data prefetching) can still run
        # while the interpreter tears down, which crashed one interrupted run in CI (SIGSEGV
        # instead of exit 130). By now the checkpoint is written, staging folders are removed,
        # locks are released and the error line is out: flush and skip the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

