"""The `dlkit` command line: thin Typer commands that parse options, call a task, print its result.

Nothing here imports TensorFlow at module level, so `dlkit --help` and shell completion are
instant; each command imports its task inside its body. Errors are mapped to one stderr line and
an exit code in one place, `run_command`.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dlkit import console
from dlkit.errors import EXIT_FAILURE, EXIT_INTERRUPTED, DlkitError

app = typer.Typer(
    name="dlkit",
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
Strategy = Annotated[str, typer.Option(help="tf.distribute strategy: auto, one-device or "
                                            "mirrored (several local GPUs).")]
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
    epochs: Epochs = 24,
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
             "spent (the model is still saved).")] = None,
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
                                dropout=dropout, max_minutes=max_minutes))
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


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: staging folders are removed, exit 130


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    app()
