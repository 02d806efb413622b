"""The one helper that quotes a library's error in a one-line message (`first_line`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlkit.core.errors import DlkitError, first_line


@pytest.mark.parametrize(("message", "expected"), [
    ("shape mismatch", "shape mismatch"),
    ("\n  first line  \nsecond line\n", "first line"),
    ("", "none"),
    ("  \n\t\n", "none"),
    ("x" * 500, "x" * 200),
])
def test_first_line_of_an_exception(message: str, expected: str) -> None:
    assert first_line(ValueError(message), 200, default="none") == expected


def test_first_line_defaults() -> None:
    assert first_line(RuntimeError()) == ""
    assert first_line("y" * 400) == "y" * 300


def test_a_checkpoint_that_fails_without_a_message_is_one_line(tmp_path: Path) -> None:
    """Loading the weights raised an exception with an empty message: the error line names
    its type (this used to be an IndexError, reported as an unexpected failure)."""
    from dlkit.core.checkpoint import STATE_FILE, WEIGHTS_FILE, Checkpoint

    checkpoint = Checkpoint(tmp_path / "model", {})
    epoch = checkpoint.folder / "epoch-00001"
    epoch.mkdir(parents=True)
    (epoch / WEIGHTS_FILE).write_bytes(b"")
    (epoch / STATE_FILE).write_text(json.dumps({"settings": {}, "epochs_done": 1,
                                                 "history": {}}))

    class Model:
        def load_weights(self, path: Path) -> None:
            raise ValueError()

    with pytest.raises(DlkitError, match=r"cannot load the checkpoint in .* \(ValueError\)"):
        checkpoint.restore(Model())


def test_a_checkpoint_of_another_network_is_refused(tmp_path: Path) -> None:
    """A checkpoint written for a network with other layers (one of an older dlkit, say): Keras
    loads the layers whose names match and only warns that it skipped the optimizer's
    variables; resume refuses it instead of continuing with a fresh optimizer."""
    import keras

    from dlkit.core.checkpoint import Checkpoint

    def model(*widths: int) -> keras.Model:
        inputs = keras.Input((3,))
        x = inputs
        for i, width in enumerate(widths):
            x = keras.layers.Dense(width, name=f"dense{i}")(x)
        net = keras.Model(inputs, x)
        net.compile(optimizer="adam", loss="mse")
        net.optimizer.build(net.trainable_variables)
        return net

    checkpoint = Checkpoint(tmp_path / "model", {})
    checkpoint.save(model(4, 2), 1, {}, [1.0])
    with pytest.raises(DlkitError, match=r"cannot load the checkpoint in .*another network"):
        checkpoint.restore(model(4))
    assert checkpoint.restore(model(4, 2))["epochs_done"] == 1
