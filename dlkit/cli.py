"""The `dlkit` command line: thin Typer commands that parse options, call a task, print its result.

Nothing here imports TensorFlow at module level, so `dlkit --help` and shell completion are
instant; each command imports its task inside its body. Errors are mapped to one stderr line and
an exit code in one place, `run_command`.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # click, vendored
from typer.core import TyperGroup

from dlkit import console
from dlkit.errors import EXIT_FAILURE, EXIT_INTERRUPTED, DlkitError


class _OneLineUsageErrors(TyperGroup):
    """Typer's command group, with Typer's own usage errors (an unknown option, a value that is
    not a number, a missing argument) printed as the one `error: ...` line of DESIGN.md, exit 2,
    instead of a multi-line panel: scripts and logs get one greppable line."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            sys.exit(exc.exit_code)  # `dlkit` alone: the help is already shown
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            console.error_line(f"{exc.format_message().rstrip('.')}{hint}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(EXIT_INTERRUPTED)
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

# Options every training command shares (DESIGN.md's names).
Epochs = Annotated[int, typer.Option("--epochs", "-e", help="Passes over the training set.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Examples per step.")]
LearningRate = Annotated[float, typer.Option("--learning-rate", "--lr",
                                             help="Peak learning rate (warm-up, cosine decay).")]
Seed = Annotated[int, typer.Option(help="Random seed for weights, shuffling and augmentation.")]
DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Look for the dataset here first (then $DLKIT_DATA, ./data, "
    "~/.keras/datasets, /usr/share/datasets, download).")]
Limit = Annotated[int | None, typer.Option(help="Use only the first N examples (smoke runs).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
ValSplit = Annotated[float, typer.Option(help="Fraction of the training set held out for "
                                              "validation.")]
Strategy = Annotated[str, typer.Option(help="tf.distribute strategy: auto, one-device, mirrored "
                                            "(several local GPUs) or multi-worker (several "
                                            "machines, TF_CONFIG; train-mnist/train-cifar).")]
Deterministic = Annotated[bool, typer.Option(help="Deterministic ops (same seed, same "
                                                  "metrics; slower).")]
Resume = Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint "
                                           "(same options).")]


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


def run_command(body: Callable[[], Any], quiet: bool = False, tensorflow: bool = True) -> Any:
    """Run a command body, mapping failures to one `error:` line and DESIGN.md's exit codes.

    With `tensorflow` (most commands), TensorFlow is imported first with its start-up chatter
    silenced, so the body's own imports find it loaded and stderr stays readable.
    """
    console.set_quiet(quiet)
    try:
        if tensorflow:
            from dlkit.runtime import import_tensorflow

            import_tensorflow()
        return body()
    except DlkitError as exc:
        _report(exc.message)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        _report("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _report(f"{type(exc).__name__}: {first}; rerun with --debug for the traceback")
        raise typer.Exit(EXIT_FAILURE) from None
    finally:
        from dlkit.artifacts import release_output_locks

        release_output_locks()


def _report(message: str) -> None:
    if _debug:
        traceback.print_exc(file=sys.stderr)
    console.error_line(message)


def print_classifier_result(result: Any, as_json: bool) -> None:
    """The end of a classifier run: JSON on stdout, or a summary table on stderr."""
    if as_json:
        console.emit_json(result.to_json())
        return
    console.summary_table(f"{result.task} {result.dataset} ({result.arch})", {
        "test accuracy": result.test_accuracy, "test loss": result.test_loss,
        "training time (s)": result.train_seconds, "images/s": result.images_per_second,
        "device": result.device, "model folder": result.artifacts["model_dir"]})
    typer.echo(f"test_accuracy={result.test_accuracy:.4f} model={result.artifacts['model_dir']}")


@app.command("datasets")
def datasets_command(
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """List the datasets dlkit knows and where each was found (or not)."""

    def body() -> None:
        from dlkit.data.locate import find
        from dlkit.data.registry import DATASETS

        rows = []
        for spec in DATASETS.values():
            found = None if spec.bundled else find(spec, data_dir)
            where = ("bundled with scikit-learn" if spec.bundled else
                     f"{found.root} ({found.origin})" if found else "not found")
            rows.append({"name": spec.name, "description": spec.description,
                         "found": spec.bundled or found is not None, "where": where})
        if as_json:
            console.emit_json({"datasets": rows})
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("dataset", "description", "where")
        for row in rows:
            table.add_row(row["name"], row["description"],
                          row["where"] if row["found"] else "[red]not found[/red]")
        Console(highlight=False).print(table)

    run_command(body, tensorflow=False)


@app.command("train-mnist")
def train_mnist(
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or digits (bundled, "
                                              "offline).")] = "mnist",
    arch: Annotated[str, typer.Option(help="mlp (the seed model) or cnn.")] = "cnn",
    epochs: Epochs = 5,
    batch_size: BatchSize = 128,
    learning_rate: LearningRate = 2e-3,
    seed: Seed = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")]
    = Path("models/mnist"),
    data_dir: DataDir = None,
    limit: Limit = None,
    val_split: ValSplit = 0.1,
    strategy: Strategy = "auto",
    deterministic: Deterministic = False,
    resume: Resume = False,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a classifier on MNIST-style 28x28 images; save it with plots and metadata.

    Example: dlkit train-mnist --dataset fashion-mnist --epochs 5 --json > result.json
    """

    def body() -> None:
        from dlkit.tasks.mnist import MnistConfig, run

        result = run(MnistConfig(output=output, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, seed=seed, data_dir=data_dir,
                                 limit=limit, val_split=val_split, strategy=strategy,
                                 deterministic=deterministic, resume=resume, dataset=dataset,
                                 arch=arch))
        print_classifier_result(result, as_json)

    run_command(body, quiet)


@app.command("train-cifar")
def train_cifar(
    dataset: Annotated[str, typer.Option(help="cifar10.")] = "cifar10",
    arch: Annotated[str, typer.Option(help="resnet (default) or seed (the seed CNN).")]
    = "resnet",
    epochs: Epochs = 20,
    batch_size: BatchSize = 128,
    learning_rate: LearningRate = 4e-3,
    seed: Seed = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")]
    = Path("models/cifar"),
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Where to look for CIFAR-10 first, or a folder with one subfolder "
        "of images per class to train on your own images.")] = None,
    image_size: Annotated[int, typer.Option(help="Side in pixels that images are resized "
                                                 "to.")] = 32,
    augment: Annotated[bool, typer.Option(help="Random crop with padding and flips.")] = True,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing factor.")] = 0.1,
    limit: Limit = None,
    val_split: ValSplit = 0.1,
    strategy: Strategy = "auto",
    deterministic: Deterministic = False,
    resume: Resume = False,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a classifier on CIFAR-10 or on your own image folders; save it with plots.

    Example: dlkit train-cifar --epochs 30 --output models/cifar
    """

    def body() -> None:
        from dlkit.tasks.cifar import CifarConfig, run

        result = run(CifarConfig(output=output, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, seed=seed, data_dir=data_dir,
                                 limit=limit, val_split=val_split, strategy=strategy,
                                 deterministic=deterministic, resume=resume, dataset=dataset,
                                 arch=arch, image_size=image_size, augment=augment,
                                 label_smoothing=label_smoothing))
        print_classifier_result(result, as_json)

    run_command(body, quiet)


@app.command("train-text")
def train_text(
    corpus: Annotated[str | None, typer.Option(
        help="UTF-8 text file to learn (any language), or - for stdin. Default: Tiny "
             "Shakespeare, found through the data lookup or downloaded.")] = None,
    arch: Annotated[str, typer.Option(help="gru (the default: best in 10 CPU minutes), lstm "
                                           "or transformer (GPT-style, causal "
                                           "attention).")] = "gru",
    seq_len: Annotated[int, typer.Option(help="Characters per training window (the "
                                              "transformer's context).")] = 128,
    layers: Annotated[int | None, typer.Option(
        help="Stacked RNN layers or transformer blocks [default: 1 RNN, 4 blocks].")] = None,
    dim: Annotated[int | None, typer.Option(
        help="RNN units or transformer width [default: 512 RNN, 192 transformer].")] = None,
    heads: Annotated[int, typer.Option(help="Attention heads (transformer).")] = 4,
    dropout: Annotated[float, typer.Option(help="Dropout rate.")] = 0.0,
    max_minutes: Annotated[float | None, typer.Option(
        help="Time budget: the learning-rate decay fits it and training stops when it is "
             "spent (the model is still saved). With --resume it applies to each session.")]
    = None,
    epochs: Epochs = 10,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 3e-3,
    seed: Seed = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")]
    = Path("models/text"),
    data_dir: DataDir = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N characters of the "
                                                   "corpus (smoke runs).")] = None,
    val_split: Annotated[float, typer.Option(help="Fraction at the end of the corpus held "
                                                  "out for validation.")] = 0.1,
    strategy: Strategy = "auto",
    deterministic: Deterministic = False,
    resume: Resume = False,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a character-level language model on a text file; save it with a loss curve.

    Example: dlkit train-text --corpus poems.txt --max-minutes 10 --output models/poems
    """

    def body() -> None:
        from dlkit.tasks.text import TextConfig, run

        result = run(TextConfig(output=output, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, seed=seed, data_dir=data_dir,
                                limit=limit, val_split=val_split, strategy=strategy,
                                deterministic=deterministic, corpus=corpus, arch=arch,
                                seq_len=seq_len, layers=layers, dim=dim, heads=heads,
                                dropout=dropout, max_minutes=max_minutes, resume=resume))
        if as_json:
            console.emit_json(result.to_json())
            return
        console.summary_table(f"train-text {result.arch}", {
            "validation loss (nats/char)": result.val_loss, "bits/char": result.val_bpc,
            "epochs": result.epochs_run, "training time (s)": result.train_seconds,
            "chars/s": result.train_chars_per_second, "device": result.device,
            "model folder": result.artifacts["model_dir"]})
        val = "nan" if result.val_loss is None else f"{result.val_loss:.4f}"
        typer.echo(f"val_loss={val} model={result.artifacts['model_dir']}")

    run_command(body, quiet)


@app.command("generate-text")
def generate_text(
    model: Annotated[Path, typer.Option(help="Model folder written by train-text.")]
    = Path("models/text"),
    prompt: Annotated[str, typer.Option(help="Text to start from (echoed first), or - to "
                                             "read it from stdin.")] = "",
    length: Annotated[int, typer.Option("--length", "-n", help="Characters to generate per "
                                                               "sample.")] = 500,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (> 0; lower is "
                                                    "more conservative).")] = 0.8,
    top_k: Annotated[int | None, typer.Option(help="Sample only among the K likeliest "
                                                   "characters.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same "
                                           "text.")] = 0,
    num_samples: Annotated[int, typer.Option(help="Independent samples, separated by a "
                                                  "blank line.")] = 1,
    quiet: Quiet = False,
) -> None:
    """Generate text from a trained model, streamed to stdout as it is produced.

    Example: dlkit generate-text --model models/text --prompt "ROMEO:" --length 2000 > out.txt
    """

    def body() -> None:
        from dlkit.tasks.generate import GenerateConfig, run

        run(GenerateConfig(model=model, prompt=prompt, length=length, temperature=temperature,
                           top_k=top_k, seed=seed, num_samples=num_samples))

    run_command(body, quiet)


@app.command("classify-image")
def classify_image(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH", help="Image files, folders (searched recursively) or - to read "
        "paths from stdin, one per line.", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", help="A dlkit model folder, a .keras "
                                        "file or a SavedModel folder.")] = Path("models/cifar"),
    labels: Annotated[Path | None, typer.Option(help="Class names, one per line (models "
                                                     "without metadata.json).")] = None,
    input_size: Annotated[tuple[int, int] | None, typer.Option(
        metavar="H W", help="Model input size when the model does not fix it.")] = None,
    invert: Annotated[str, typer.Option(help="auto: invert dark-on-light images for digit "
                                             "models; yes; no.")] = "auto",
    scale: Annotated[str, typer.Option(help="Pixel range the model takes: raw (0-255, dlkit "
                                            "models), unit (0-1) or signed (-1..1).")] = "raw",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Print the K best labels per "
                                                             "image.")] = 1,
    batch_size: BatchSize = 64,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write the predictions "
                                                               "to this CSV file.")] = None,
    show: Annotated[Path | None, typer.Option(help="Write a PNG grid of the images with "
                                                   "their labels.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array on stdout.")]
    = False,
    quiet: Quiet = False,
) -> None:
    """Classify image files with a trained model: one line per image, path<TAB>label<TAB>confidence.

    Example: dlkit classify-image photos/ cat.jpg --model models/cifar --top-k 3
    """

    def body() -> int:
        from dlkit.tasks.classify import ClassifyConfig, run

        def emit(prediction) -> None:
            if as_json:
                return
            try:
                sys.stdout.write(prediction.to_line() + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # the reader has gone (`| head`): stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None

        config = ClassifyConfig(inputs=list(paths), model=model, labels=labels,
                                input_size=input_size, invert=invert, scale=scale, top_k=top_k,
                                batch_size=batch_size, csv=csv_file, show=show,
                                progress=as_json or not sys.stdout.isatty())
        result = run(config, emit, lambda path, why: console.error_line(f"{path}: {why}"))
        if as_json:
            console.emit_json([p.to_json() for p in result.predictions])
        if not result.predictions and not result.errors:
            console.error_line("no input images; give image files, folders, or - to read "
                               "paths from stdin")
        count = len(result.predictions)
        console.info(f"classified {count} image{'' if count == 1 else 's'} in "
                     f"{result.seconds:.2f} s "
                     f"({result.images_per_second:.0f} images/s), {len(result.errors)} failed; "
                     f"{result.model}")
        return result.exit_code

    # The task imports TensorFlow itself, without Keras (a second less start-up).
    code = run_command(body, quiet, tensorflow=False)
    if code:
        raise typer.Exit(code)


@app.command("train-vae")
def train_vae(
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or digits (bundled, "
                                              "offline).")] = "mnist",
    latent_dim: Annotated[int, typer.Option(help="Size of the latent space (2 adds the "
                                                 "latent manifold and scatter plots).")] = 16,
    arch: Annotated[str, typer.Option(help="conv (convolutional) or dense (the "
                                           "fully-connected baseline).")] = "conv",
    epochs: Epochs = 10,
    batch_size: BatchSize = 128,
    learning_rate: LearningRate = 2e-3,
    max_minutes: Annotated[float | None, typer.Option(
        help="Time budget in minutes: stop training when it is spent (the model is saved); "
             "the learning rate decays to zero over it. With --resume it applies to each "
             "session.")]
    = None,
    seed: Seed = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")]
    = Path("models/vae"),
    data_dir: DataDir = None,
    limit: Limit = None,
    strategy: Strategy = "auto",
    deterministic: Deterministic = False,
    resume: Resume = False,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a variational autoencoder; report reconstruction, KL and their sum (nats/image).

    Example: dlkit train-vae --dataset fashion-mnist --latent-dim 2 --epochs 10
    """

    def body() -> None:
        from dlkit.tasks.vae import VaeConfig, run

        result = run(VaeConfig(output=output, epochs=epochs, batch_size=batch_size,
                               learning_rate=learning_rate, seed=seed, data_dir=data_dir,
                               limit=limit, strategy=strategy, deterministic=deterministic,
                               dataset=dataset, arch=arch, latent_dim=latent_dim,
                               max_minutes=max_minutes, resume=resume))
        if as_json:
            console.emit_json(result.to_json())
            return
        console.summary_table(f"train-vae {result.dataset} ({result.arch}, latent "
                              f"{result.latent_dim})", {
            "test negative ELBO (nats/image)": result.test_loss,
            "reconstruction": result.test_reconstruction, "KL": result.test_kl,
            "epochs": f"{result.epochs_completed}/{result.epochs}",
            "training time (s)": result.train_seconds, "device": result.device,
            "model folder": result.artifacts["model_dir"]})
        typer.echo(f"test_loss={result.test_loss:.2f} model={result.artifacts['model_dir']}")

    run_command(body, quiet)


@app.command("sample-vae")
def sample_vae(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by "
                                                              "train-vae.")] = Path("models/vae"),
    count: Annotated[int, typer.Option("--count", "-n", help="Number of images.")] = 64,
    out: Annotated[Path, typer.Option(help="Grid PNG to write.")] = Path("vae_samples.png"),
    columns: Annotated[int | None, typer.Option(help="Images per row (default: square).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the latent vectors: the same seed "
                                                  "gives the same images.")] = None,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Decode random latent vectors into new images; write them as one grid PNG.

    Example: dlkit sample-vae --model models/vae --count 64 --seed 1 --out grid.png
    """

    def body() -> None:
        from dlkit.tasks.vae import SampleConfig, sample

        result = sample(SampleConfig(model=model, count=count, out=out, seed=seed,
                                     columns=columns))
        if as_json:
            console.emit_json(result)
        else:
            typer.echo(result["grid"])

    run_command(body, quiet)


@app.command("train-sequence")
def train_sequence(
    csv_file: Annotated[str, typer.Option("--csv", help="CSV file with a header row (- reads "
                                                        "stdin).")],
    column: Annotated[str, typer.Option(help="Numeric column to learn and forecast.")],
    time_column: Annotated[str | None, typer.Option(help="Column with the time stamps (for "
                                                         "plots and forecast labels).")] = None,
    arch: Annotated[str, typer.Option(help="simplernn (the seed's), lstm or gru.")]
    = "simplernn",
    window: Annotated[int, typer.Option(help="Past values the model sees.")] = 24,
    horizon: Annotated[int, typer.Option(help="Future values it predicts at once.")] = 1,
    units: Annotated[int, typer.Option(help="Recurrent units.")] = 50,
    period: Annotated[int | None, typer.Option(help="Season length for the seasonal-naive "
                                                    "baseline (default: inferred from the "
                                                    "training part's autocorrelation).")]
    = None,
    test_split: Annotated[float, typer.Option(help="Fraction at the end of the series held out "
                                                   "for the test.")] = 0.15,
    val_split: Annotated[float, typer.Option(help="Fraction before the test part held out for "
                                                  "validation (best epoch kept).")] = 0.1,
    epochs: Epochs = 100,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")]
    = Path("models/sequence"),
    strategy: Strategy = "auto",
    deterministic: Deterministic = False,
    resume: Resume = False,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Learn a time series from a CSV column; score against naive and seasonal-naive forecasts.

    Example: dlkit train-sequence --csv sunspots.csv --column SUNACTIVITY --time-column YEAR
    """

    def body() -> None:
        from dlkit.tasks.sequence import SequenceConfig, run

        result = run(SequenceConfig(output=output, epochs=epochs, batch_size=batch_size,
                                    learning_rate=learning_rate, seed=seed,
                                    val_split=val_split, strategy=strategy,
                                    deterministic=deterministic, resume=resume,
                                    csv=csv_file, column=column,
                                    time_column=time_column, arch=arch, window=window,
                                    horizon=horizon, units=units, test_split=test_split,
                                    period=period))
        if as_json:
            console.emit_json(result.to_json())
            return
        console.summary_table(f"train-sequence {result.column} ({result.arch})", {
            "test MAE / RMSE": f"{result.test_mae:.4g} / {result.test_rmse:.4g}",
            "naive MAE / RMSE": f"{result.naive_mae:.4g} / {result.naive_rmse:.4g}",
            f"seasonal naive (period {result.period}) MAE / RMSE":
                f"{result.seasonal_naive_mae:.4g} / {result.seasonal_naive_rmse:.4g}",
            "best epoch": result.best_epoch, "training time (s)": result.train_seconds,
            "model folder": result.artifacts["model_dir"]})
        typer.echo(f"test_rmse={result.test_rmse:.4g} naive_rmse={result.naive_rmse:.4g} "
                   f"seasonal_naive_rmse={result.seasonal_naive_rmse:.4g} "
                   f"model={result.artifacts['model_dir']}")

    run_command(body, quiet)


@app.command("forecast")
def forecast(
    csv_file: Annotated[str, typer.Option("--csv", help="CSV with the series up to now (- reads "
                                                        "stdin); its last values are used.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by "
                                                              "train-sequence.")]
    = Path("models/sequence"),
    column: Annotated[str | None, typer.Option(help="Column to read (default: the one the "
                                                    "model was trained on).")] = None,
    steps: Annotated[int | None, typer.Option(help="Values to forecast (default: the model's "
                                                   "horizon; more feeds forecasts back in).")]
    = None,
    quiet: Quiet = False,
) -> None:
    """Forecast the next values after the end of a series: CSV on stdout.

    Example: dlkit forecast --model models/sequence --csv sunspots.csv --steps 5 > next.csv
    """

    def body() -> None:
        import csv

        from dlkit.tasks.sequence import ForecastConfig
        from dlkit.tasks.sequence import forecast as run_forecast

        table = run_forecast(ForecastConfig(model=model, csv=csv_file, column=column,
                                            steps=steps))
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table["header"])
        writer.writerows(table["rows"])
        sys.stdout.flush()

    run_command(body, quiet)


@app.command("train-text-classifier")
def train_text_classifier(
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder with one subfolder of UTF-8 .txt files per class.")] = None,
    csv_file: Annotated[str | None, typer.Option("--csv", help="CSV file with a text and a "
                                                               "label column.")] = None,
    text_column: Annotated[str, typer.Option(help="CSV column with the texts.")] = "text",
    label_column: Annotated[str, typer.Option(help="CSV column with the labels.")] = "label",
    arch: Annotated[str, typer.Option(help="bilstm (the seed's) or transformer.")] = "bilstm",
    vocab_size: Annotated[int, typer.Option(help="Largest vocabulary kept (most frequent "
                                                 "words).")] = 20_000,
    seq_len: Annotated[int, typer.Option(help="Words per text the model reads (longer texts "
                                              "are cut).")] = 200,
    epochs: Epochs = 5,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 2e-3,
    seed: Seed = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")]
    = Path("models/text-classifier"),
    limit: Limit = None,
    val_split: ValSplit = 0.1,
    strategy: Strategy = "auto",
    deterministic: Deterministic = False,
    resume: Resume = False,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a text classifier whose saved model takes raw strings.

    Example: dlkit train-text-classifier --csv reviews.csv --text-column review --label-column stars
    """

    def body() -> None:
        from dlkit.tasks.text_classifier import TextClassifierConfig, run

        result = run(TextClassifierConfig(output=output, epochs=epochs, batch_size=batch_size,
                                          learning_rate=learning_rate, seed=seed, limit=limit,
                                          val_split=val_split, strategy=strategy,
                                          deterministic=deterministic, resume=resume,
                                          folder=data_dir,
                                          csv=csv_file, text_column=text_column,
                                          label_column=label_column, arch=arch,
                                          vocab_size=vocab_size, seq_len=seq_len))
        if as_json:
            console.emit_json(result.to_json())
            return
        console.summary_table(f"train-text-classifier ({result.arch})", {
            "validation accuracy": result.val_accuracy, "majority-class rate":
            result.majority_rate, "classes": len(result.class_names),
            "training time (s)": result.train_seconds, "device": result.device,
            "model folder": result.artifacts["model_dir"]})
        acc = "nan" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
        typer.echo(f"val_accuracy={acc} model={result.artifacts['model_dir']}")

    run_command(body, quiet)


@app.command("classify-text")
def classify_text(
    texts: Annotated[list[str], typer.Argument(
        metavar="TEXT...", help="Texts to classify, or - to read one text per line from "
        "stdin.", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder written by "
                                                              "train-text-classifier.")]
    = Path("models/text-classifier"),
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Print the K best labels per "
                                                             "text.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array on stdout.")]
    = False,
    quiet: Quiet = False,
) -> None:
    """Label texts: one line per text, label<TAB>confidence (K pairs with --top-k).

    Example: echo "a wonderful film" | dlkit classify-text --model models/reviews -
    """

    def body() -> None:
        from dlkit.tasks.text_classifier import ClassifyTextConfig, classify

        predictions, seconds = classify(ClassifyTextConfig(model=model, texts=list(texts),
                                                           top_k=top_k))
        if as_json:
            console.emit_json([p.to_json() for p in predictions])
        else:
            sys.stdout.write("".join(p.to_line() + "\n" for p in predictions))
            sys.stdout.flush()
        console.info(f"classified {len(predictions)} texts in {seconds:.2f} s")

    run_command(body, quiet)


@app.command("train-gan")
def train_gan(
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist, digits or cifar10.")]
    = "mnist",
    conditional: Annotated[bool, typer.Option(help="Class-conditional generation (AC-GAN): "
                                                   "ask the generator for a class.")] = False,
    latent_dim: Annotated[int, typer.Option(help="Size of the generator's noise vector.")] = 64,
    width: Annotated[int, typer.Option(help="Base number of convolution filters.")] = 32,
    epochs: Epochs = 10,
    batch_size: BatchSize = 64,
    learning_rate: LearningRate = 2e-4,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop training after this many minutes (keeps what was learned). With --resume "
             "it applies to each session.")] = None,
    seed: Seed = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")]
    = Path("models/gan"),
    data_dir: DataDir = None,
    limit: Limit = None,
    strategy: Strategy = "auto",
    deterministic: Deterministic = False,
    resume: Resume = False,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Train a DCGAN; save the generator, a sample grid per epoch, a GIF and loss curves.

    Example: dlkit train-gan --dataset fashion-mnist --conditional --epochs 5
    """

    def body() -> None:
        from dlkit.tasks.gan import GanConfig, run

        result = run(GanConfig(output=output, epochs=epochs, batch_size=batch_size,
                               learning_rate=learning_rate, seed=seed, data_dir=data_dir,
                               limit=limit, strategy=strategy, deterministic=deterministic,
                               dataset=dataset, latent_dim=latent_dim, conditional=conditional,
                               width=width, max_minutes=max_minutes, resume=resume))
        if as_json:
            console.emit_json(result.to_json())
            return
        console.summary_table(f"train-gan {result.dataset}", {
            "epochs": f"{result.epochs_completed}/{result.epochs} ({result.stopped})",
            "d loss": result.final_d_loss, "g loss": result.final_g_loss,
            "training time (s)": result.train_seconds, "device": result.device,
            "final grid": result.final_grid, "model folder": result.artifacts["model_dir"]})
        typer.echo(f"grid={result.final_grid} model={result.artifacts['model_dir']}")

    run_command(body, quiet)


@app.command("sample-gan")
def sample_gan(
    model: Annotated[Path, typer.Option(help="Model folder written by train-gan.")]
    = Path("models/gan"),
    count: Annotated[int, typer.Option("--count", "-n", help="Number of images.")] = 100,
    out: Annotated[Path | None, typer.Option(help="Grid PNG to write (default samples.png "
                                                  "unless --out-dir is given).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Also write one PNG per image "
                                                      "here.")] = None,
    label: Annotated[int | None, typer.Option(help="Class index to draw (conditional "
                                                   "models only).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the noise: the same seed gives "
                                                  "the same images.")] = None,
    truncation: Annotated[float | None, typer.Option(
        help="Redraw noise values beyond +-T (truncation trick: cleaner, less varied).")]
    = None,
    as_json: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Draw new images from a trained generator: a grid PNG or one PNG per image.

    Example: dlkit sample-gan --model models/gan --count 64 --label 7 --seed 1 --out sevens.png
    """

    def body() -> None:
        from dlkit.tasks.gan_eval import SampleConfig, sample

        grid = out if out is not None or out_dir is not None else Path("samples.png")
        result = sample(SampleConfig(model=model, count=count, out=grid, out_dir=out_dir,
                                     label=label, seed=seed, truncation=truncation))
        if as_json:
            console.emit_json(result)
            return
        if "grid" in result:
            typer.echo(result["grid"])
        for path in result.get("images", []):
            typer.echo(path)

    run_command(body, quiet)


@app.command("evaluate-gan")
def evaluate_gan(
    model: Annotated[Path, typer.Option(help="Model folder written by train-gan.")]
    = Path("models/gan"),
    classifier: Annotated[Path, typer.Option(help="Classifier folder written by train-mnist "
                                                  "(or train-cifar) on the same dataset.")]
    = Path("models/mnist"),
    count: Annotated[int, typer.Option("--count", "-n", help="Number of samples scored.")]
    = 1000,
    seed: Annotated[int, typer.Option(help="Seed for the noise.")] = 0,
    threshold: Annotated[float, typer.Option(help="Confidence that counts as "
                                                  "recognisable.")] = 0.9,
    truncation: Annotated[float | None, typer.Option(
        help="Redraw noise values beyond +-T (truncation trick: cleaner, less varied).")]
    = None,
    quiet: Quiet = False,
) -> None:
    """Score generated images with a trained classifier; prints one JSON object.

    Reports the share the classifier labels with confidence >= threshold ("recognisable"), the
    label-histogram entropy relative to ln(classes), and for conditional models the share
    labelled as the class asked for.

    Example: dlkit evaluate-gan --model models/gan --classifier models/mnist
    """

    def body() -> None:
        from dlkit.tasks.gan_eval import EvalConfig, evaluate

        result = evaluate(EvalConfig(model=model, classifier=classifier, count=count,
                                     seed=seed, threshold=threshold,
                                     truncation=truncation))
        console.emit_json(result.to_json())

    run_command(body, quiet)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: staging folders are removed, exit 130


def main() -> None:
    """Console-script entry point."""
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
