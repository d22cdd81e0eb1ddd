"""The web app: a Starlette application around an ``Explorer``, served by uvicorn.

Routes (JSON in and out; images travel as base64 uint8 pixels the page draws on a canvas):

    GET  /                      the page (index.html, app.js, app.css: package files, nothing else is served)
    GET  /api/info              model, map points, slider order and ranges
    POST /api/decode            {"z": [[...L], ...], "context": null} -> decoded images (or table rows)
    GET  /api/example/{index}   a test example, its reconstruction, code, map position, negative ELBO
    POST /api/interpolate       {"a": [...L], "b": [...L], "steps": S} -> linear and slerp strips
    POST /api/neighbours        {"z": [...L], "k": K} -> the nearest training examples
    POST /api/encode            an image file as the body (or {"x": [...D]} for a table) -> as /api/example
    POST /api/sample            {"n": N, "temperature": T, "seed": S, "syntax": false} -> decoded prior samples
                                (syntax: a SMILES model's tokens kept to SMILES syntax and valences)

A conditional model's class travels as ``"context": C`` in decode, interpolate, sample and encode
(or ``?context=C`` with an uploaded image); absent, the explorer's class (``--class``, default 0).
A model conditioned on context columns takes ``"context": [v_1, ..., v_K]`` in the columns' own
units (``?context=v_1,...,v_K``); absent, the explorer's context (``--context``, default the mean).
An unconditional model refuses a context.

Safety: ``Guard`` (an ASGI middleware) answers first. Served on loopback it refuses requests whose
Host header is not a loopback name (DNS rebinding); with a token (any other host) every request
must carry it (the ``token`` query parameter, which sets a cookie, the cookie, or an
``X-Vaekit-Token`` header). Request bodies are bounded; POST bodies must be JSON or an image,
which a cross-site form cannot send without a preflight the app never grants.
"""

from __future__ import annotations

import base64
import secrets
import socket
from importlib import resources
from urllib.parse import parse_qs

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vaekit.errors import ConfigError, DataError
from vaekit.explore import requests as rq
from vaekit.explore.explorer import Explorer

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER, TOKEN_COOKIE = "x-vaekit-token", "vaekit_token"
STATIC = {  # URL path -> (package file, media type): the only files the app ever reads
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


# ----- converting tensors for the page ---------------------------------------------------------


def items(t: torch.Tensor, view: str, explorer: Explorer | None = None) -> dict:
    """Decoded outputs (N, *shape) as JSON: images as base64 uint8 pixels in (N, H, W, C) order;
    table rows as lists of numbers; a molecule model's sequences (N, T) as pictures the same way, with
    their SMILES in ``text``."""
    if view == "molecule":
        pictures, texts = explorer.pictures(t)  # (N, S, S, 3)
        n, h, w, c = pictures.shape
        return {"n": n, "shape": [c, h, w], "pixels": base64.b64encode(pictures.tobytes()).decode("ascii"), "text": texts}
    if view == "image":
        n, c, h, w = t.shape
        pixels = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        return {"n": n, "shape": [c, h, w], "pixels": base64.b64encode(pixels.tobytes()).decode("ascii")}
    return {"n": len(t), "shape": list(t.shape[1:]), "values": np.round(t.double().numpy(), 4).tolist()}


def _vector(t: torch.Tensor) -> list[float]:
    return np.round(t.detach().double().numpy(), 5).tolist()


def scored(s, index: int, show, label: int | None = None) -> dict:
    """One row of an ``Explorer.score`` result as JSON; ``show``: outputs -> JSON (``items`` for the explorer's view)."""
    return {
        "index": index,
        "label": label,
        "x": show(s.x[index : index + 1]),
        "reconstruction": show(s.reconstruction[index : index + 1]),
        "z": _vector(s.z[index]),
        "xy": _vector(s.xy[index]),
        "neg_elbo": round(float(s.neg_elbo[index]), 3),
        "percentile": round(float(s.percentile[index]), 2),
    }


# ----- request helpers ---------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) beyond ``limit`` bytes, whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise rq.BadRequest("malformed Content-Length")
        if int(declared) > limit:
            raise rq.BadRequest(f"the request body is larger than {limit:,} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise rq.BadRequest(f"the request body is larger than {limit:,} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def json_body(request: Request) -> dict:
    if media_type(request) != "application/json":
        raise rq.BadRequest("send the request as application/json", 415)
    return rq.parse_json(await read_body(request, rq.MAX_JSON_BYTES))


def request_context(explorer: Explorer, value) -> int | torch.Tensor | None:
    """A request's ``context`` value checked for the explorer's model; absent (None), the explorer's default."""
    if explorer.columns:  # a model conditioned on context columns: K numbers in their own units
        return rq.column_context(value, explorer.column_mean, explorer.column_std, explorer.default_context)
    return rq.context(value, explorer.classes, explorer.default_context)


async def uploaded_example(request: Request, explorer: Explorer) -> tuple[torch.Tensor, int | torch.Tensor | None]:
    """The example sent to /api/encode and its context: a JSON ``{"x": row, "context": ...}``, or an
    image file as the body (``?context=`` and ``?invert=1`` in the query string). The query's context is
    the page's selector: for a semi-supervised model it only decodes (``/api/decode``), and the example,
    given no context, is encoded as the class its classifier predicts (``Explorer.input_class``)."""
    kind = media_type(request)
    y = request_context(explorer, request.query_params.get("context"))
    if explorer.run.model.classifier is not None:
        y = None
    input_shape = explorer.model.input_shape
    if explorer.codec is not None:  # a molecule model: {"smiles": "..."}
        obj = rq.parse_json(await read_body(request, rq.MAX_JSON_BYTES)) if kind == "application/json" else {}
        smiles = obj.get("smiles")
        if not isinstance(smiles, str) or not smiles.strip():
            raise rq.BadRequest('send a molecule as JSON: {"smiles": "CCO"}', 415 if kind != "application/json" else 400)
        try:
            return explorer.codec.ids([smiles]), y
        except DataError as exc:
            raise rq.BadRequest(str(exc).replace("string 1", "the SMILES", 1)) from None
    if kind == "application/json":
        obj = rq.parse_json(await read_body(request, rq.MAX_JSON_BYTES))
        x = rq.row(obj.get("x"), input_shape)
        return x, (request_context(explorer, obj.get("context")) if obj.get("context") is not None else y)
    if kind.startswith("image/") or kind == "application/octet-stream":
        invert = request.query_params.get("invert", "0") == "1"
        return explorer.prepare_input(rq.image(await read_body(request, rq.MAX_UPLOAD_BYTES), input_shape, invert=invert)), y
    raise rq.BadRequest("send an image file (image/* or application/octet-stream) or a JSON row", 415)


# ----- the app -----------------------------------------------------------------------------------


def create_app(explorer: Explorer, *, token: str | None = None, allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS) -> Guard:
    """The ASGI app for ``explorer``. token: required on every request when given (serve beyond
    loopback only with one). allowed_hosts: the Host header names accepted (None: any)."""
    view = explorer.view

    def show(t: torch.Tensor) -> dict:
        return items(t, view, explorer)

    L = explorer.model.latent_dim
    info = explorer.describe()
    static = {
        path: (resources.files("vaekit.explore").joinpath("static", name).read_bytes(), kind) for path, (name, kind) in STATIC.items()
    }
    test_labels = explorer.test.y
    train_labels = explorer.train.y

    async def page(request: Request) -> Response:
        body, kind = static[request.url.path]
        return Response(body, media_type=kind)

    async def get_info(request: Request) -> Response:
        return JSONResponse(info)

    async def decode(request: Request) -> Response:
        obj = await json_body(request)
        y = request_context(explorer, obj.get("context"))
        z = rq.codes(obj.get("z"), L)  # (B, L)
        return JSONResponse(show(explorer.decode(z, y)))

    async def example(request: Request) -> Response:
        index = rq.integer(request.path_params["index"], "index", 0, len(explorer.test) - 1)
        label = None if test_labels is None else int(test_labels[index])
        return JSONResponse(scored(explorer.example(index), 0, show, label) | {"index": index})

    async def interpolate(request: Request) -> Response:
        obj = await json_body(request)
        y = request_context(explorer, obj.get("context"))
        a, b = rq.code(obj.get("a"), L, "a"), rq.code(obj.get("b"), L, "b")
        steps = rq.integer(obj.get("steps", 10), "steps", 2, rq.MAX_STEPS)
        strips = explorer.interpolate(a, b, steps, y)
        return JSONResponse({name: show(images) for name, images in strips.items()})

    async def neighbours(request: Request) -> Response:
        obj = await json_body(request)
        z = rq.code(obj.get("z"), L)
        k = rq.integer(obj.get("k", 8), "k", 1, rq.MAX_NEIGHBOURS)
        idx, dist = explorer.neighbours(z, k)
        return JSONResponse(
            {
                "index": idx.tolist(),
                "distance": _vector(dist),
                "label": None if train_labels is None else train_labels[idx].tolist(),
                "images": show(explorer.train.x[idx]),
            }
        )

    async def encode(request: Request) -> Response:
        x, y = await uploaded_example(request, explorer)
        return JSONResponse(scored(explorer.score(x, y), 0, show))

    async def sample(request: Request) -> Response:
        obj = await json_body(request)
        y = request_context(explorer, obj.get("context"))
        n = rq.integer(obj.get("n", 16), "n", 1, rq.MAX_SAMPLES)
        temperature = rq.real(obj.get("temperature", 1.0), "temperature", 0.05, 3.0)
        seed = rq.integer(obj.get("seed", 0), "seed", 0, 2**31 - 1)
        syntax = rq.flag(obj.get("syntax", False), "syntax")
        if syntax and explorer.syntax is None:
            raise rq.BadRequest("syntax rules apply to a model of SMILES strings, not to this one")
        return JSONResponse(show(explorer.samples(n, temperature, seed, y, syntax)))

    async def bad_request(request: Request, exc: rq.BadRequest) -> Response:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    routes = [Route(path, page, methods=["GET"]) for path in STATIC] + [
        Route("/api/info", get_info, methods=["GET"]),
        Route("/api/decode", decode, methods=["POST"]),
        Route("/api/example/{index}", example, methods=["GET"]),
        Route("/api/interpolate", interpolate, methods=["POST"]),
        Route("/api/neighbours", neighbours, methods=["POST"]),
        Route("/api/encode", encode, methods=["POST"]),
        Route("/api/sample", sample, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={rq.BadRequest: bad_request})
    return Guard(app, token=token, allowed_hosts=allowed_hosts)


class Guard:
    """ASGI middleware in front of the app: Host check, token check, body-size cap, security headers."""

    def __init__(self, app, *, token: str | None, allowed_hosts: tuple[str, ...] | None, max_body: int = rq.MAX_UPLOAD_BYTES):
        self.app, self.token, self.max_body = app, token, max_body
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        set_cookie = False
        if self.allowed_hosts is not None and _host_name(headers.get("host", "")) not in self.allowed_hosts:
            return await _refuse(send, 403, "this address is not served here (Host header refused)")
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            given = headers.get(TOKEN_HEADER) or _cookie(headers.get("cookie", ""), TOKEN_COOKIE) or query
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                return await _refuse(send, 403, "a valid token is required: open the address 'vaekit explore' printed")
            set_cookie = bool(query) and query == given
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return await _refuse(send, 413, f"the request body is larger than {self.max_body:,} bytes")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                if set_cookie:
                    extra.append((b"set-cookie", f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _host_name(host: str) -> str:
    """The name part of a Host header: 'localhost:8765' -> 'localhost', '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


async def _refuse(send, status: int, message: str) -> None:
    response = JSONResponse({"error": message}, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": response.body})


# ----- serving -----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one. ``ConfigError`` (one line) when it
    cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on such sockets; without it a response's
    # header and body writes meet the client's delayed ACK, +40 ms per request
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the port is in use; choose another with --port" if exc.errno in (98, 48) else (exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(app, sock: socket.socket):
    """A uvicorn server for ``app`` on the bound socket ``sock`` (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    return uvicorn.Server(config)
