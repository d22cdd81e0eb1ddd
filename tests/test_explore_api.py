"""``vaekit explore``'s web API in-process (Starlette's test client): every endpoint for every kind
of model vaekit trains, every bad request answered with a 4xx and a short message (the app keeps
serving), the host and token guard, and the command line around it."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the explore extra is not installed (pip install vaekit[explore])")
from starlette.testclient import TestClient
from test_latent import tiny_run

from vaekit.cli import main
from vaekit.explore import requests as rq
from vaekit.explore.app import create_app
from vaekit.explore.explorer import Explorer

KINDS = [
    "vae2",
    "vae4",
    "ae2",
    "mixture",
    "conv_rgb",
    "table",
    "hvae",
]  # 2-D and PCA maps, AE, mixture prior, colour conv, table, hierarchy


@pytest.fixture(scope="module")
def explorers(tmp_path_factory):
    cache = {}

    def get(name: str) -> Explorer:
        if name not in cache:
            run = tiny_run(tmp_path_factory, name)
            cache[name] = Explorer(run, run.load_data())
        return cache[name]

    return get


def client(explorer, **kw) -> TestClient:
    return TestClient(create_app(explorer, **kw), base_url="http://127.0.0.1:8765")


@pytest.fixture(scope="module")
def vae4(explorers):
    return client(explorers("vae4"))


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def decoded(out: dict) -> np.ndarray:
    """An /api/decode answer as an array (N, H, W, C) of uint8, or (N, D) values for a table."""
    if "pixels" in out:
        c, h, w = out["shape"]
        return np.frombuffer(base64.b64decode(out["pixels"]), np.uint8).reshape(out["n"], h, w, c)
    return np.asarray(out["values"])


# ----- every endpoint, every kind of model ------------------------------------------------------


@pytest.mark.parametrize("name", KINDS)
def test_every_endpoint_answers(explorers, name):
    ex = explorers(name)
    c = client(ex)
    L, shape = ex.model.latent_dim, list(ex.model.input_shape)
    page = c.get("/")
    assert (
        page.status_code == 200 and "app.js" in page.text and "http" not in page.text.replace("http-equiv", "")
    )  # nothing fetched from elsewhere
    assert c.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/app.css").status_code == 200
    info = c.get("/api/info").json()
    assert info["model"]["latent_dim"] == L and info["model"]["input_shape"] == shape
    assert info["view"] == ("bars" if name == "table" else "image")
    assert sorted(info["dims"]["order"]) == list(range(L)) and len(info["map"]["x"]) == len(info["map"]["index"])
    assert info["map"]["method"] == ("latent" if L <= 2 else "pca")

    z = torch.randn(3, L).tolist()
    out = c.post("/api/decode", json={"z": z, "context": None}).json()
    want = ex.decode(torch.tensor(z))
    if name == "table":
        np.testing.assert_allclose(decoded(out), want.numpy(), atol=1e-3)
    else:
        assert decoded(out).shape == (3, shape[1], shape[2], shape[0])
        np.testing.assert_allclose(decoded(out), (want.permute(0, 2, 3, 1).numpy() * 255).round(), atol=1)

    ex0 = c.get("/api/example/0").json()
    assert ex0["index"] == 0 and len(ex0["z"]) == L and len(ex0["xy"]) == 2
    assert np.isfinite(ex0["neg_elbo"]) and 0 <= ex0["percentile"] <= 100
    np.testing.assert_allclose(ex0["z"], ex.test_codes[0].numpy(), atol=1e-4)

    strips = c.post("/api/interpolate", json={"a": ex0["z"], "b": z[0], "steps": 7}).json()
    assert strips["linear"]["n"] == strips["slerp"]["n"] == 7
    near = c.post("/api/neighbours", json={"z": ex0["z"], "k": 5}).json()
    assert len(near["index"]) == 5 and near["distance"] == sorted(near["distance"])
    assert c.post("/api/sample", json={"n": 6, "temperature": 0.7, "seed": 3}).json()["n"] == 6

    if name == "table":
        row = ex.test.x[0].tolist()
        mine = c.post("/api/encode", json={"x": row}).json()
    else:
        img = (ex.test.x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        mine = c.post(
            "/api/encode", content=png_bytes(img.squeeze(-1) if shape[0] == 1 else img), headers={"content-type": "image/png"}
        ).json()
    assert len(mine["z"]) == L and 0 <= mine["percentile"] <= 100
    np.testing.assert_allclose(mine["z"], ex.test_codes[0].numpy(), atol=0.05)  # the same example, through a PNG


def test_a_2d_map_is_the_latent_plane_and_a_wider_one_keeps_the_base_code(explorers):
    ex2 = explorers("vae2")
    z = torch.randn(5, 2)
    torch.testing.assert_close(ex2.project(z), z)
    ex = explorers("vae4")
    base = torch.randn(4)
    xy = torch.randn(3, 2)
    z = ex.unproject(xy, base)  # (3, 4)
    torch.testing.assert_close(ex.project(z), xy, atol=1e-5, rtol=0)
    off = lambda v: v.double() - ((v.double() - ex.map_mean) @ ex.map_axes.T) @ ex.map_axes  # noqa: E731
    torch.testing.assert_close(off(z), off(base).expand(3, -1), atol=1e-5, rtol=0)  # off the plane: the base's


def test_sliders_follow_kl_and_the_anomaly_percentile_ranks_against_the_test_split(explorers):
    ex = explorers("vae4")
    score = ex.ranking.score
    assert bool((score[:-1] >= score[1:]).all()) and ex.ranking.measure == "KL"
    noise = torch.rand(1, *ex.model.input_shape)  # uniform noise: nothing like a digit
    assert float(ex.score(noise).percentile[0]) > 90
    assert ex.describe()["dims"]["measure"] == "KL"
    assert explorers("ae2").describe()["dims"]["measure"] == "variance"


def test_examples_are_scored_reproducibly(vae4):
    a, b = vae4.get("/api/example/5").json(), vae4.get("/api/example/5").json()
    assert a == b


def test_an_inverted_upload_matches_the_plain_one(explorers):
    ex = explorers("vae2")
    c = client(ex)
    img = (ex.test.x[1, 0].numpy() * 255).round().astype(np.uint8)
    plain = c.post("/api/encode", content=png_bytes(img), headers={"content-type": "application/octet-stream"}).json()
    inverted = c.post("/api/encode?invert=1", content=png_bytes(255 - img), headers={"content-type": "image/png"}).json()
    np.testing.assert_allclose(plain["z"], inverted["z"], atol=1e-4)


@pytest.mark.parametrize("auxiliary", [0, 4], ids=["m2", "adgm"])
def test_a_semisupervised_upload_is_encoded_as_its_predicted_class(tmp_path, auxiliary):
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaekit.training import train

    config = RunConfig(
        data=DataConfig(source="digits", labelled=50),
        model=ModelConfig(kind="m2", latent_dim=2, hidden=(32,), auxiliary_dim=auxiliary),
        train=TrainConfig(epochs=2, threads=1),
    )
    run = train(config, tmp_path / "m2")
    ex, model = Explorer(run, run.load_data()), run.model
    x = ex.test.x[:16].float()  # (B, 1, 8, 8)
    with torch.inference_mode():
        predicted = model.classify(x).logits.argmax(-1)  # (B,)
        style = model.encode(x, predicted).mean  # (B, L)
        as_zero = model.encode(x, torch.zeros_like(predicted)).mean
    assert bool((predicted != 0).any())  # some inputs are encoded differently from class 0
    torch.testing.assert_close(ex.score(x).z, style)
    assert not torch.allclose(ex.score(x).z, as_zero)
    torch.testing.assert_close(ex.score(x, 0).z, as_zero)  # a class given is still the class encoded with
    torch.testing.assert_close(ex.decode(style[:1], 3), model.decode(style[:1], 3).mean.clamp(0, 1))  # decoded as asked
    c = client(ex)  # the page's selector (?context=) decodes; it does not change how an upload is encoded
    img = png_bytes((x[1, 0].numpy() * 255).round().astype(np.uint8))
    zs = [c.post(f"/api/encode?context={k}", content=img, headers={"content-type": "image/png"}).json()["z"] for k in (0, 5)]
    assert zs[0] == zs[1]


def test_an_upload_of_another_size_and_mode_is_converted(explorers):
    c = client(explorers("vae2"))
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[10:30, 12:18] = 255
    out = c.post("/api/encode", content=png_bytes(rgba), headers={"content-type": "image/png"}).json()
    assert out["x"]["shape"] == [1, 8, 8]
    jpeg = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(jpeg, format="JPEG")
    assert c.post("/api/encode", content=jpeg.getvalue(), headers={"content-type": "image/jpeg"}).status_code == 200


# ----- bad requests: a 4xx with a short message, and the app keeps serving -----------------------


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with a few bytes of data: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


L4 = [0.0] * 4
JSON_HEADERS = {"content-type": "application/json"}
BAD = [  # (method, path, body, headers, status, words in the message)
    ("post", "/api/decode", {"z": [[0.0] * 3]}, None, 400, "4 numbers"),
    ("post", "/api/decode", {"z": [[0.0] * 5]}, None, 400, "4 numbers"),
    ("post", "/api/decode", {"z": [0.0] * 4}, None, 400, "list of 4"),
    ("post", "/api/decode", {"z": []}, None, 400, "non-empty"),
    ("post", "/api/decode", {"z": "0,0,0,0"}, None, 400, "non-empty"),
    ("post", "/api/decode", {}, None, 400, "non-empty"),
    ("post", "/api/decode", {"z": [["a", 0, 0, 0]]}, None, 400, "numbers only"),
    ("post", "/api/decode", {"z": [[True, 0, 0, 0]]}, None, 400, "numbers only"),
    ("post", "/api/decode", b'{"z": [[NaN, 0, 0, 0]]}', JSON_HEADERS, 400, "non-finite"),
    ("post", "/api/decode", b'{"z": [[Infinity, 0, 0, 0]]}', JSON_HEADERS, 400, "non-finite"),
    ("post", "/api/decode", b'{"z": [[1e400, 0, 0, 0]]}', JSON_HEADERS, 400, "non-finite"),
    ("post", "/api/decode", {"z": [[1e39, 0, 0, 0]]}, None, 400, "too large"),
    ("post", "/api/decode", {"z": [[1e5, 0, 0, 0]]}, None, 400, "beyond"),
    ("post", "/api/decode", {"z": [L4] * (rq.MAX_BATCH + 1)}, None, 413, "at most"),
    ("post", "/api/decode", {"z": [L4], "context": 3}, None, 400, "no context"),
    ("post", "/api/decode", b'{"z": [[0, 0, 0, 0]', JSON_HEADERS, 400, "not valid JSON"),
    ("post", "/api/decode", b"\xff\xfe", JSON_HEADERS, 400, "not valid JSON"),
    ("post", "/api/decode", b"[1, 2]", JSON_HEADERS, 400, "JSON object"),
    ("post", "/api/decode", b"[" * 100_000 + b"]" * 100_000, JSON_HEADERS, 400, "not valid JSON"),
    ("post", "/api/decode", b'{"z": [[0, 0, 0, 0]]}', {"content-type": "text/plain"}, 415, "application/json"),
    ("post", "/api/decode", b" " * (rq.MAX_JSON_BYTES + 1), JSON_HEADERS, 413, "larger than"),
    ("get", "/api/example/-1", None, None, 404, "between"),
    ("get", "/api/example/100000", None, None, 404, "between"),
    ("get", "/api/example/abc", None, None, 400, "whole number"),
    ("get", "/api/example/99999999999999999999999", None, None, 404, "between"),
    ("post", "/api/interpolate", {"a": L4, "b": L4, "steps": 1}, None, 400, "steps"),
    ("post", "/api/interpolate", {"a": L4, "b": L4, "steps": 10_000}, None, 400, "steps"),
    ("post", "/api/interpolate", {"a": L4, "steps": 5}, None, 400, "b must be"),
    ("post", "/api/interpolate", {"a": L4, "b": [0.0] * 2}, None, 400, "b must be"),
    ("post", "/api/neighbours", {"z": L4, "k": 0}, None, 400, "k must"),
    ("post", "/api/neighbours", {"z": L4, "k": 10**6}, None, 400, "k must"),
    ("post", "/api/neighbours", {"z": L4, "k": 2.5}, None, 400, "whole number"),
    ("post", "/api/sample", {"n": 0}, None, 400, "n must"),
    ("post", "/api/sample", {"n": 10**6}, None, 400, "n must"),
    ("post", "/api/sample", {"temperature": 0}, None, 400, "temperature"),
    ("post", "/api/sample", {"temperature": "hot"}, None, 400, "temperature"),
    ("post", "/api/sample", {"seed": -1}, None, 400, "seed"),
    ("post", "/api/sample", {"syntax": True}, None, 400, "model of SMILES strings"),
    ("post", "/api/encode", b"", {"content-type": "image/png"}, 400, "empty"),
    ("post", "/api/encode", b"not an image at all", {"content-type": "image/png"}, 415, "not a readable image"),
    ("post", "/api/encode", b"%PDF-1.4\n", {"content-type": "application/octet-stream"}, 415, "not a readable image"),
    ("post", "/api/encode", b"x" * 100, {"content-type": "text/plain"}, 415, "image"),
    ("post", "/api/encode", {"x": "/etc/passwd"}, None, 400, "image"),
    ("post", "/api/encode", {"path": "/etc/passwd"}, None, 400, "image"),
    ("post", "/api/encode", b"\x00" * (rq.MAX_UPLOAD_BYTES + 1), {"content-type": "image/png"}, 413, "larger than"),
    ("post", "/api/encode", huge_png(60_000, 60_000), {"content-type": "image/png"}, 413, "too large"),
    ("get", "/api/nothing-here", None, None, 404, ""),
    ("get", "/etc/passwd", None, None, 404, ""),
    ("get", "/../../pyproject.toml", None, None, 404, ""),
    ("post", "/api/info", {}, None, 405, ""),
]


@pytest.mark.parametrize("method, path, body, headers, status, words", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests_get_a_4xx_and_the_app_keeps_serving(vae4, method, path, body, headers, status, words):
    kw = {}
    if isinstance(body, (bytes, bytearray)):
        kw = {"content": bytes(body), "headers": headers or {}}
    elif body is not None:
        kw = {"json": body}
    r = getattr(vae4, method)(path, **kw)
    assert r.status_code == status, r.text
    if words:
        message = r.json()["error"]
        assert words in message and "\n" not in message and len(message) < 200
    assert vae4.post("/api/decode", json={"z": [L4]}).status_code == 200


def test_truncated_and_bomb_images_are_refused(explorers):
    c = client(explorers("vae2"))
    good = png_bytes(np.zeros((8, 8), np.uint8))
    assert c.post("/api/encode", content=good[: len(good) // 2], headers={"content-type": "image/png"}).status_code == 415
    big = Image.new("1", (9000, 9000))  # 81 M pixels, a few kB compressed
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    assert len(buf.getvalue()) < rq.MAX_UPLOAD_BYTES
    r = c.post("/api/encode", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "9000x9000" in r.json()["error"]


def test_table_and_image_inputs_are_not_mixed(explorers):
    table, images = client(explorers("table")), client(explorers("vae2"))
    assert (
        table.post("/api/encode", content=png_bytes(np.zeros((8, 8), np.uint8)), headers={"content-type": "image/png"}).status_code == 415
    )
    assert images.post("/api/encode", json={"x": [0.0] * 64}).status_code == 400
    r = table.post("/api/encode", json={"x": [0.0] * 3})
    assert r.status_code == 400 and "list of 13 numbers" in r.json()["error"]


def test_a_body_without_content_length_is_still_bounded(vae4):
    def chunks():
        for _ in range(rq.MAX_JSON_BYTES // 4096 + 2):
            yield b" " * 4096

    r = vae4.post("/api/decode", content=chunks(), headers=JSON_HEADERS)
    assert r.status_code == 413


# ----- the guard: host names, token, headers -------------------------------------------------------


def test_loopback_refuses_other_host_names(explorers):
    c = TestClient(create_app(explorers("vae2")), base_url="http://evil.example:8765")
    r = c.get("/api/info")
    assert r.status_code == 403 and "Host" in r.json()["error"]
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert c.get("/api/info", headers={"host": host}).status_code == 200


def test_a_token_is_needed_on_every_request(explorers):
    c = TestClient(create_app(explorers("vae2"), token="s3cret", allowed_hosts=None), base_url="http://192.0.2.1:8765")
    for path in ("/", "/app.js", "/api/info", "/api/example/0"):
        r = c.get(path)
        assert r.status_code == 403 and "token" in r.json()["error"]
    assert c.get("/api/info", headers={"x-vaekit-token": "wrong"}).status_code == 403
    assert c.get("/api/info?token=s3cre").status_code == 403
    assert c.post("/api/decode", json={"z": [[0.0, 0.0]]}).status_code == 403
    assert c.post("/api/decode", json={"z": [[0.0, 0.0]]}, headers={"x-vaekit-token": "s3cret"}).status_code == 200
    page = c.get("/?token=s3cret")  # the printed address: sets a cookie for the page's own requests
    assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
    assert c.get("/app.js").status_code == 200  # the client now holds the cookie


def test_security_headers(vae4):
    r = vae4.get("/")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"


def test_the_page_reads_no_file_the_client_names(explorers):
    from vaekit.explore import app as app_module

    assert set(app_module.STATIC) == {"/", "/app.js", "/app.css"}  # fixed names, read once at start


# ----- the command line --------------------------------------------------------------------------------


def test_without_the_extra_the_command_says_what_to_install(monkeypatch, capsys, explorers):
    run_dir = explorers("vae2").run.path
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert main(["explore", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install vaekit[explore]" in err


def test_bad_arguments_are_one_line_errors(capsys, tmp_path, explorers):
    assert main(["explore", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["explore", str(tmp_path), "--port", "70000"])
    assert exit_.value.code == 2 and "port number" in capsys.readouterr().err
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["explore", str(explorers("vae2").run.path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "port is in use" in err[0]


@contextlib.contextmanager
def serving(run_dir, *args):
    """``vaekit explore RUN --port 0 ARGS`` in a subprocess: yields (process, printed address); stops it with SIGINT
    (Ctrl-C) and checks that it ends cleanly."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "explore", str(run_dir), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "serving" in line, proc.stderr.read() if proc.poll() is not None else line
        yield proc, line.split(" at ")[1].split()[0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_the_command_serves_prints_its_address_and_stops_on_ctrl_c(explorers):
    with serving(explorers("vae2").run.path) as (proc, url):
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        status, info = get(url + "api/info")
        assert status == 200 and info["model"]["latent_dim"] == 2
    assert "stopped" in proc.stderr.read()


def test_beyond_loopback_the_command_warns_and_needs_its_token(explorers):
    with serving(explorers("vae2").run.path, "--host", "0.0.0.0") as (proc, url):
        token = url.split("?token=")[1]
        assert len(token) >= 24
        port = url.split(":")[2].split("/")[0]
        assert get(f"http://127.0.0.1:{port}/api/info")[0] == 403
        assert get(f"http://127.0.0.1:{port}/api/info", {"X-Vaekit-Token": token})[0] == 200
    assert "WARNING" in proc.stderr.read()


def test_the_listening_socket_sends_without_delay():
    """Without TCP_NODELAY each response's header and body writes wait on the client's delayed ACK (+40 ms)."""
    import socket

    from vaekit.explore.app import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
