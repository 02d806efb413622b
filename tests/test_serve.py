"""`dlkit serve` through real HTTP on 127.0.0.1 (an ephemeral port): TensorFlow Serving's REST
API (status, metadata, :predict in both formats), `:classify` answering what classify-image
prints, concurrent clients, bad requests that leave the server serving, bad `--model` values,
and shutdown (SIGTERM: exit 0; Ctrl-C: exit 130)."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_error_line, run_dlkit, run_in_process


class Server:
    """A `dlkit serve` process and a way to talk to it."""

    def __init__(self, proc: subprocess.Popen, port: int, log: list[str]) -> None:
        self.proc, self.port, self.log = proc, port, log

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            conn.close()

    def post_json(self, path: str, payload: object) -> tuple[int, dict]:
        return self.request("POST", path, json.dumps(payload),
                            {"Content-Type": "application/json"})


def start(*args: object) -> Server:
    proc = subprocess.Popen([sys.executable, "-m", "dlkit", "serve", "--port", "0",
                             *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    port = None
    for line in proc.stderr:
        log.append(line)
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    assert port is not None, "".join(log) + proc.stderr.read()

    def keep_reading() -> None:
        for line in proc.stderr:
            log.append(line)

    threading.Thread(target=keep_reading, daemon=True).start()
    return Server(proc, port, log)


def stop(server: Server, sig: int = signal.SIGTERM) -> int:
    server.proc.send_signal(sig)
    return server.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(zoo) -> Iterator[Server]:
    running = start("--model", f"digits={zoo('mnist')}", "--model", f"gan={zoo('gan')}")
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "digit.png"
    image = np.zeros((28, 28), np.uint8)
    cv2.line(image, (14, 4), (14, 24), 255, 3)
    cv2.imwrite(str(path), image)
    return path


def test_status_and_metadata_speak_tensorflow_servings_api(server: Server) -> None:
    code, status = server.request("GET", "/v1/models/digits")
    assert code == 200
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert server.request("GET", "/v1/models/digits/versions/1")[0] == 200
    code, meta = server.request("GET", "/v1/models/digits/metadata")
    assert code == 200
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (spec,) = signature["inputs"].values()
    assert spec["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in spec["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert meta["dlkit"]["class_names"] == [str(i) for i in range(10)]
    assert meta["dlkit"]["backend"] == "litert"
    assert meta["dlkit"]["routes"] == [":predict", ":classify"]
    _, gan_meta = server.request("GET", "/v1/models/gan/metadata")
    gan_inputs = gan_meta["metadata"]["signature_def"]["signature_def"]["serving_default"][
        "inputs"]
    assert sorted(spec["dtype"] for spec in gan_inputs.values()) == ["DT_FLOAT", "DT_INT32"]
    code, listed = server.request("GET", "/v1/models")
    assert code == 200 and [m["name"] for m in listed["models"]] == ["digits", "gan"]


def test_predict_rows_and_columns_agree_with_the_model(server: Server, zoo) -> None:
    from dlkit.core.config import Backend
    from dlkit.core.serving import open_model

    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype(np.float32)
    expected = open_model(zoo("mnist"), Backend.litert)(images)
    code, rows = server.post_json("/v1/models/digits:predict",
                                  {"instances": images.tolist()})
    assert code == 200
    np.testing.assert_allclose(rows["predictions"], expected, atol=1e-6)
    code, columns = server.post_json("/v1/models/digits/versions/1:predict",
                                     {"inputs": images.tolist()})
    assert code == 200
    np.testing.assert_allclose(columns["outputs"], expected, atol=1e-6)

    # a model of two inputs: each instance names them, or one batch per input
    _, meta = server.request("GET", "/v1/models/gan/metadata")
    names = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    noise = next(n for n, s in names.items() if s["dtype"] == "DT_FLOAT")
    label = next(n for n, s in names.items() if s["dtype"] == "DT_INT32")
    width = int(names[noise]["tensor_shape"]["dim"][1]["size"])
    z = np.random.default_rng(1).normal(size=(2, width)).round(4).tolist()
    code, drawn = server.post_json("/v1/models/gan:predict", {"instances": [
        {noise: z[0], label: 3}, {noise: z[1], label: 7}]})
    assert code == 200
    assert np.asarray(drawn["predictions"]).shape == (2, 28, 28, 1)
    code, same = server.post_json("/v1/models/gan:predict",
                                  {"inputs": {noise: z, label: [3, 7]}})
    np.testing.assert_allclose(same["outputs"], drawn["predictions"], atol=1e-4)


def test_classify_answers_what_classify_image_prints(server: Server, zoo,
                                                     digit_png: Path) -> None:
    code, answer = server.request("POST", "/v1/models/digits:classify?top_k=3",
                                  digit_png.read_bytes(), {"Content-Type": "image/png"})
    assert code == 200
    printed = run_in_process("classify-image", digit_png, "-m", zoo("mnist"), "-k", "3",
                             "--json")
    assert printed.returncode == 0, printed.stderr
    (expected,) = json.loads(printed.stdout)
    assert answer["top"] == expected["top"]
    assert (answer["label"], answer["confidence"]) == (expected["label"],
                                                       expected["confidence"])


def test_concurrent_clients_get_their_own_answers(server: Server) -> None:
    images = np.random.default_rng(2).integers(0, 256, (32, 28, 28, 1)).tolist()
    alone = [server.post_json("/v1/models/digits:predict", {"instances": [i]})[1]
             for i in images]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(
            lambda i: server.post_json("/v1/models/digits:predict", {"instances": [i]})[1],
            images))
    assert together == alone


BAD_REQUESTS = [
    ("POST", "/v1/models/digits:predict", b"{not json", 400, "not JSON"),
    ("POST", "/v1/models/digits:predict", b"[" * 100_000, 400, "nested too deeply"),
    ("POST", "/v1/models/digits:predict", b'{"instances": [[1, 2, 3]]}', 400,
     "shape 28x28x1"),
    ("POST", "/v1/models/digits:predict", b'{"instances": []}', 400, "non-empty"),
    ("POST", "/v1/models/digits:predict", b'{"instances": [1], "inputs": [1]}', 400,
     "exactly one"),
    ("POST", "/v1/models/digits:predict", b'{"instances": [[[[NaN]]]]}', 400, None),
    ("POST", "/v1/models/digits:predict", b'[1, 2]', 400, "JSON object"),
    ("POST", "/v1/models/digits:predict", b'{"instances": ["a"]}', 400, "numbers"),
    ("POST", "/v1/models/digits:predict",
     b'{"instances": [1], "signature_name": "other"}', 400, "serving_default"),
    ("POST", "/v1/models/gan:predict", b'{"instances": [[0.0]]}', 400, "several inputs"),
    ("POST", "/v1/models/digits:classify", b"not an image", 400, "not an image"),
    ("POST", "/v1/models/digits:classify?top_k=0", b"", 400, "top_k"),
    ("POST", "/v1/models/gan:classify", b"", 400, "not an image classifier"),
    ("POST", "/v1/models/nope:predict", b"{}", 404, "no model named 'nope'"),
    ("GET", "/v1/models/digits/versions/2", None, 404, "only version 1"),
    ("POST", "/v1/models/digits:explain", b"{}", 404, "no method"),
    ("POST", "/v1/models/digits:generate", b"{}", 400, "does not generate text"),
    ("GET", "/elsewhere", None, 404, "no route"),
    ("GET", "/v1/models/digits:predict", None, 405, "POST it"),
    ("DELETE", "/v1/models/digits", None, 405, "GET it"),
]


@pytest.mark.parametrize("method,path,body,code,says", BAD_REQUESTS)
def test_bad_requests_get_a_json_error_and_the_server_serves_on(
        server: Server, method: str, path: str, body: bytes | None, code: int,
        says: str | None) -> None:
    got, answer = server.request(method, path, body)
    assert got == code, answer
    assert set(answer) == {"error"} and "\n" not in answer["error"]
    if says is not None:
        assert says in answer["error"]
    assert server.request("GET", "/v1/models/digits")[0] == 200


def test_a_body_over_the_limit_is_refused_unread(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.putrequest("POST", "/v1/models/digits:predict")
    conn.putheader("Content-Length", str(33 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"{" * 1024)  # the rest is never sent: the answer must not wait for it
    answer = conn.getresponse()
    assert answer.status == 413
    assert "32 MiB" in json.loads(answer.read())["error"]
    conn.close()


def test_each_request_is_one_line_on_stderr(server: Server) -> None:
    import time

    server.request("GET", "/v1/models/gan")
    deadline = time.monotonic() + 10  # the line is written as the answer leaves
    while not any(re.fullmatch(r"127\.0\.0\.1 GET /v1/models/gan 200 [\d.]+ ms\n", line)
                  for line in server.log):
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_stops_the_server_cleanly(zoo, sig: int, code: int) -> None:
    running = start("--model", f"digits={zoo('mnist')}", "--json")
    assert running.request("GET", "/v1/models/digits")[0] == 200
    assert stop(running, sig) == code
    summary = json.loads(running.proc.stdout.read())
    assert summary["requests"] == 1 and summary["models"][0]["backend"] == "litert"
    assert "Traceback" not in "".join(running.log)


def test_quiet_prints_nothing_on_stderr(zoo) -> None:
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dlkit", "serve", "--port", str(port),
                             "--model", f"digits={zoo('mnist')}", "--json", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = Server(proc, port, [])
    deadline = time.monotonic() + 60
    while True:
        try:
            assert server.request("GET", "/v1/models/digits")[0] == 200
            break
        except ConnectionRefusedError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and stderr == ""
    assert json.loads(stdout)["requests"] == 1


@pytest.mark.parametrize("args,says", [
    (["--model", "digits=/no/such/folder"], "no such file or folder"),
    (["--model", "digits"], "is not NAME=FOLDER"),
    (["--model", "a/b=x"], "must be 1-64 letters"),
    (["--model", "a={D}", "--model", "a={D}"], "given twice"),
    (["--model", "notes={T}"], "is not a model"),
    (["--model", "digits={D}", "--port", "70000"], "65535"),
    (["--model", "digits={D}", "--host", "no.such.host.invalid"], "--host"),
])
def test_bad_model_options_are_one_line_and_exit_2(zoo, tmp_path: Path, args: list[str],
                                                   says: str) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    words = [a.replace("{D}", str(zoo("mnist"))).replace("{T}", str(tmp_path / "notes"))
             for a in args]
    result = run_in_process("serve", *words)
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert says in result.stderr


def test_a_port_in_use_is_exit_2(zoo) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_dlkit("serve", "--model", f"digits={zoo('mnist')}", "--port",
                           str(taken.getsockname()[1]))
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert "cannot listen" in result.stderr


def test_tensorflow_backend_and_a_text_classifier(zoo) -> None:
    running = start("--model", f"digits={zoo('mnist')}", "--model", f"texts={zoo('tcls')}",
                    "--backend", "tensorflow")
    try:
        images = np.random.default_rng(3).integers(0, 256, (2, 28, 28, 1)).tolist()
        code, tf_answer = running.post_json("/v1/models/digits:predict",
                                            {"instances": images})
        assert code == 200
        from dlkit.core.config import Backend
        from dlkit.core.serving import open_model

        lite = open_model(zoo("mnist"), Backend.litert)(np.asarray(images, np.float32))
        np.testing.assert_allclose(tf_answer["predictions"], lite, atol=1e-5)
        _, meta = running.request("GET", "/v1/models/texts/metadata")
        assert meta["dlkit"]["backend"] == "tensorflow"
        code, texts = running.post_json("/v1/models/texts:predict", {"instances": [
            "orbit rocket planet", "oven flour butter"]})
        assert code == 200, texts
        assert np.asarray(texts["predictions"]).shape[0] == 2
        code, bad = running.post_json("/v1/models/texts:predict", {"instances": [1, 2]})
        assert code == 400 and "texts" in bad["error"]
    finally:
        assert stop(running) == 0


def test_classifier_folders_hold_their_labels(zoo) -> None:
    for name in ("mnist", "tcls"):
        meta = json.loads((zoo(name) / "metadata.json").read_text())
        labels = (zoo(name) / "labels.txt").read_text().splitlines()
        assert labels == meta["class_names"] and "labels.txt" in meta["files"]
    assert not (zoo("gan") / "labels.txt").exists()  # class names, but not a classifier


def test_generate_streams_what_generate_text_writes(zoo) -> None:
    running = start("--model", f"text={zoo('text')}")
    try:
        _, meta = running.request("GET", "/v1/models/text/metadata")
        assert meta["dlkit"]["routes"] == [":generate"] and meta["dlkit"]["backend"] == "litert"
        request = {"prompt": "To be", "length": 40, "seed": 3, "temperature": 0.7}
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
        conn.request("POST", "/v1/models/text:generate", json.dumps(request))
        answer = conn.getresponse()
        assert answer.status == 200
        assert answer.getheader("Transfer-Encoding") == "chunked"  # streamed, not buffered
        text = answer.read().decode("utf-8")
        conn.close()
        printed = run_in_process("generate-text", "-m", zoo("text"), "--prompt", "To be",
                                 "--length", "40", "--seed", "3", "--temperature", "0.7")
        assert printed.returncode == 0, printed.stderr
        assert text == printed.stdout and len(text) == len("To be") + 40 + 1
        for body, says in ((b'{"length": 0}', "length must be >= 1"),
                           (b'{"sampler": "best"}', "not one of"),
                           (b'{"prompt": 7}', "prompt must be a text"),
                           (b'{"colour": "red"}', "unknown field")):
            code, bad = running.request("POST", "/v1/models/text:generate", body)
            assert code == 400 and says in bad["error"], bad
        code, bad = running.post_json("/v1/models/text:predict", {"instances": [1]})
        assert code == 400 and ":generate" in bad["error"]

        # a client that leaves mid-text frees the model for the next one
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
        conn.request("POST", "/v1/models/text:generate", json.dumps({"length": 10_000_000}))
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read(64)
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
        conn.request("POST", "/v1/models/text:generate", json.dumps({"length": 5}))  # at once
        assert len(conn.getresponse().read().decode()) == 6
        conn.close()
    finally:
        assert stop(running) == 0


def test_a_language_model_preset_streams_what_generate_text_writes(tmp_path: Path) -> None:
    """A keras-hub CausalLM preset (a tiny GPT-2 saved with save_to_preset) is served for
    `:generate` on TensorFlow; the same seed gives generate-text's text."""
    from hub_presets import save_gpt2_preset

    preset = save_gpt2_preset(tmp_path / "gpt2")
    running = start("--model", f"gpt={preset}")
    try:
        _, meta = running.request("GET", "/v1/models/gpt/metadata")
        assert meta["dlkit"]["routes"] == [":generate"]
        assert meta["dlkit"]["backend"] == "tensorflow"
        request = {"prompt": "the", "length": 6, "seed": 1, "sampler": "top-k"}
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=120)
        conn.request("POST", "/v1/models/gpt:generate", json.dumps(request))
        answer = conn.getresponse()
        assert answer.status == 200
        text = answer.read().decode("utf-8")
        conn.close()
    finally:
        assert stop(running) == 0
    printed = run_in_process("generate-text", "-m", preset, "--prompt", "the", "--length", "6",
                             "--seed", "1", "--sampler", "top-k")
    assert printed.returncode == 0, printed.stderr
    assert text == printed.stdout and text.startswith("the")
