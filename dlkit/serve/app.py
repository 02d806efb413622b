"""The HTTP side of `dlkit serve`: TensorFlow Serving's REST API as a Starlette application.

Routes (NAME a served model; `/versions/1` may follow NAME, as TensorFlow Serving allows):

- `GET /v1/models/NAME`: the model's status (`model_version_status`, version 1 AVAILABLE);
- `GET /v1/models/NAME/metadata`: its `serving_default` signature (inputs and output with
  dtypes and shapes) and, under `dlkit`, what its metadata says (task, class names, backend);
- `POST /v1/models/NAME:predict`: `{"instances": [...]}` (one entry per example) answered
  with `{"predictions": [...]}`, or `{"inputs": ...}` (one batch per input) answered with
  `{"outputs": ...}`;
- `POST /v1/models/NAME:classify[?top_k=K]` (image classifiers): the bytes of one image file
  as the body, answered with classify-image's label, confidence and top K;
- `POST /v1/models/NAME:generate` (text models): generate-text's options as JSON, answered
  with the text streamed as the model writes it;
- `GET /v1/models`: the served models (a dlkit addition).

Every failure is a JSON `{"error": "..."}` with its status: 400 for a request the model cannot
take (malformed JSON, wrong shapes, not an image), 404 for an unknown model or path, 405 for a
wrong method, 413 for a body over the limit, 500 for a failure inside the model (logged; the
server keeps serving). Each request is logged as one line on stderr unless `quiet`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dlkit.core.errors import first_line
from dlkit.core.files import size_text
from dlkit.serve.config import MAX_BODY
from dlkit.serve.models import VERSION, RequestError, Served, as_arrays, top_k

PATH = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                  r"(?P<tail>/metadata|:predict|:classify|:[A-Za-z]+)?")
TF_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF",
             "int32": "DT_INT32", "int64": "DT_INT64", "int8": "DT_INT8", "uint8": "DT_UINT8",
             "int16": "DT_INT16", "bool": "DT_BOOL", "string": "DT_STRING",
             "object": "DT_STRING"}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(models: dict[str, Served], log: Callable[[str], None] | None) -> Starlette:
    """The application serving `models` by name; `log` receives one line per request."""
    turns = {name: asyncio.Lock() for name in models}

    async def on_model(served: Served, work: Callable[..., Any], *args: Any) -> Any:
        """Run `work` on a worker thread once the model's earlier requests are done, in the
        order the requests came (an asyncio lock is first come, first served; a thread lock
        is not, which left some of 16 concurrent clients waiting 3x as long as the rest)."""
        async with turns[served.name]:
            return await anyio.to_thread.run_sync(work, *args)

    async def models_route(request: Request) -> Response:
        if request.method != "GET":
            return error(405, f"{request.method} is not allowed here; GET it")
        return JSONResponse({"models": [
            {"name": m.name, "version": VERSION, "backend": m.backend, "routes": m.routes}
            for m in models.values()]})

    async def model_route(request: Request) -> Response:
        match = PATH.fullmatch(request.url.path)
        if match is None:
            return error(404, f"no route {request.url.path}")
        served = models.get(match["name"])
        if served is None:
            known = ", ".join(sorted(models))
            return error(404, f"no model named {match['name']!r} (served: {known})")
        if match["version"] not in (None, VERSION):
            return error(404, f"model {served.name!r} has only version {VERSION}")
        tail = match["tail"] or ""
        method = "POST" if tail.startswith(":") else "GET"
        if request.method != method:
            return error(405, f"{request.method} is not allowed here; {method} it")
        try:
            return await answer(served, tail, request)
        except RequestError as exc:
            return error(exc.status, str(exc))
        except Exception as exc:  # a model failure must not take the server down
            message = (f"the model failed on this request ({type(exc).__name__}: "
                       f"{first_line(exc)})")
            if log is not None:
                log(f"error: {request.method} {request.url.path}: {message}")
            return error(500, message)

    async def answer(served: Served, tail: str, request: Request) -> Response:
        """What the route `tail` ("", "/metadata", ":predict", ...) of a model answers."""
        if tail == "":
            return JSONResponse(status(served))
        if tail == "/metadata":
            return JSONResponse(metadata(served))
        if tail == ":generate":
            return await generate(served, parse_json(await read_body(request)),
                                  turns[served.name], log)
        if tail == ":predict" and served.predictor is not None:
            arrays, columnar = as_arrays(served, parse_json(await read_body(request)))
            output = await on_model(served, served.predict, arrays)
            values = np.asarray(output).tolist()
            return JSONResponse({"outputs": values} if columnar else {"predictions": values})
        if tail == ":predict":
            raise RequestError(400, f"model {served.name!r} does not take :predict; it "
                               f"answers {', '.join(served.routes)}")
        if tail == ":classify":
            k = top_k(request.query_params.get("top_k"))
            body = await read_body(request)
            return JSONResponse(await on_model(served, served.classify, body, k))
        return error(404, f"no method {tail[1:]!r}; model {served.name!r} answers "
                     f"{', '.join(served.routes)}")

    routes = [Route("/v1/models", models_route, methods=["GET", "POST", "PUT", "DELETE"]),
              Route("/v1/models/{rest:path}", model_route,
                    methods=["GET", "POST", "PUT", "DELETE"])]
    app = Starlette(routes=routes, exception_handlers={
        404: lambda request, exc: error(404, f"no route {request.url.path}")})
    return _Logged(app, log) if log is not None else app


async def generate(served: Served, payload: Any, turn: asyncio.Lock,
                   log: Callable[[str], None] | None) -> Response:
    """Stream generate-text's text for the request as the model makes it (text/plain,
    chunked). The model is held from the first piece to the last: a worker thread runs the
    generation and hands the pieces over; a client that goes away stops it."""
    await turn.acquire()
    try:
        pieces = await anyio.to_thread.run_sync(served.generate, payload)
    except BaseException:
        turn.release()
        raise
    return StreamingResponse(_streamed(pieces, turn, log),
                             media_type="text/plain; charset=utf-8")


async def _streamed(pieces: Iterator[str], turn: asyncio.Lock,
                    log: Callable[[str], None] | None) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for piece in itertools.chain(pieces, ["\n"]):
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, piece)
        except Exception as exc:  # the model failed mid-text: the text ends there
            if log is not None:
                loop.call_soon_threadsafe(log, f"error: generation failed "
                                          f"({type(exc).__name__}: {first_line(exc)})")
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)
            loop.call_soon_threadsafe(turn.release)  # the model is free once this ends

    loop.run_in_executor(None, produce)
    done = False
    try:
        while not done:
            piece = await queue.get()
            if piece is None:
                break
            text = [piece]
            while not queue.empty():  # what came while the last piece was being sent
                more = queue.get_nowait()
                if more is None:
                    done = True
                    break
                text.append(more)
            yield "".join(text).encode("utf-8")
    finally:
        stop.set()


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the body is not JSON ({first_line(exc)})") from None
    except RecursionError:  # "[[[[..." deeper than Python's parser goes
        raise RequestError(400, "the body's JSON is nested too deeply") from None


async def read_body(request: Request) -> bytes:
    """The request body, refused (413) past MAX_BODY whether or not it declares its length."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise RequestError(413, f"the body is {int(declared):,} bytes; the most dlkit serve "
                           f"reads is {size_text(MAX_BODY)}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            raise RequestError(413, f"the body is larger than {size_text(MAX_BODY)}, the "
                               "most dlkit serve reads")
        chunks.append(chunk)
    return b"".join(chunks)


def status(served: Served) -> dict[str, Any]:
    """TensorFlow Serving's GetModelStatus answer: version 1, available."""
    return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def metadata(served: Served) -> dict[str, Any]:
    """TensorFlow Serving's GetModelMetadata answer for the serving_default signature, plus
    what dlkit knows of the model."""
    p = served.predictor
    dlkit = {"backend": served.backend, "routes": served.routes, "model": served.description}
    if p is None:  # a text generator: no tensor signature to show
        return {"model_spec": {"name": served.name, "signature_name": "", "version": VERSION},
                "metadata": {"signature_def": {"signature_def": {}}},
                "dlkit": {"task": "train-text", "unit": served.generator.unit, **dlkit}}
    inputs = {name: _tensor(name, dtype, shape) for name, dtype, shape in served.inputs()}
    output = p.output_name or "output_0"
    signature = {"inputs": inputs,
                 "outputs": {output: _tensor(output, "float32", p.output_shape)},
                 "method_name": "tensorflow/serving/predict"}
    meta = p.metadata or {}
    names = served.classifier.class_names if served.classifier is not None else \
        meta.get("class_names")
    return {"model_spec": {"name": served.name, "signature_name": "", "version": VERSION},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
            "dlkit": {"task": meta.get("task"), "class_names": names, **dlkit}}


def _tensor(name: str, dtype: str, shape: tuple[int | None, ...]) -> dict[str, Any]:
    dims = [{"size": "-1", "name": ""}] + [
        {"size": str(-1 if d is None else d), "name": ""} for d in shape]
    return {"dtype": TF_DTYPES.get(dtype, "DT_INVALID"), "name": name,
            "tensor_shape": {"dim": dims, "unknown_rank": False}}


class _Logged:
    """ASGI middleware: one line per HTTP request (client, method, path, status, time)."""

    def __init__(self, app: Any, log: Callable[[str], None]) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, code = time.perf_counter(), [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = (scope.get("client") or ("-",))[0]
            self.log(f"{client} {scope['method']} {scope['path']} {code[0]} "
                     f"{(time.perf_counter() - start) * 1000:.1f} ms")


def stderr_log(line: str) -> None:
    """Write one log line on stderr; a closed stderr (its reader gone) is no reason to stop
    answering requests, so the lines are then dropped."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
