"""``vaekit explore`` in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright)
against the app served by uvicorn on a free loopback port.

Without a browser these tests skip and say why; under CI (``CI`` set, or ``VAEKIT_REQUIRE_BROWSER=1``)
they fail instead. The browser is ``$VAEKIT_CHROMIUM``, else ``chromium`` on the PATH, else
/usr/bin/chromium. A small loopback load test (8 clients) needs no browser.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the explore extra is not installed (pip install vaekit[explore])")

from test_context_columns import ink_npz, ink_run  # noqa: F401 (fixtures)
from test_latent import tiny_run
from test_sequence_cli import smiles_run  # noqa: F401 (fixture)

from vaekit.explore.app import bind, create_app, make_server
from vaekit.explore.explorer import Explorer

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("VAEKIT_REQUIRE_BROWSER") == "1"


def no_browser(reason: str):
    if browser_required():
        pytest.fail(f"{reason}; CI (CI or VAEKIT_REQUIRE_BROWSER=1) must run the browser tests")
    pytest.skip(f"{reason}; install it to run the browser tests (apt-get install chromium; pip install playwright)")


def chromium_path() -> str | None:
    for candidate in (os.environ.get("VAEKIT_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class LiveServer:
    """The explorer app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, explorer: Explorer):
        self.explorer = explorer
        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = make_server(create_app(explorer), self.sock)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    run = tiny_run(tmp_path_factory, "vae2")
    server = LiveServer(Explorer(run, run.load_data()))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        no_browser("no Chromium found (looked at $VAEKIT_CHROMIUM, chromium on the PATH, /usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the playwright Python package is not installed")
    with sync_playwright() as p:  # Playwright gives each launch a fresh temporary profile (--user-data-dir)
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, live):
    """One page for the module's tests, in order; ``page.errors`` collects console errors and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda msg: pg.errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    pg.goto(live.url)
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    yield pg
    context.close()


def shot(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def settle(pg) -> None:
    """Wait until no decode is in flight or waiting."""
    pg.wait_for_function("() => !decoder.busy && !decoder.next", timeout=10_000)


def test_the_page_loads_without_errors(page):
    assert page.errors == []
    assert page.locator("#model-line").inner_text().startswith("vae2")
    assert page.locator("#sliders input").count() == 2
    assert not page.locator("#syntax-choice").is_visible()  # an image model: no SMILES syntax to keep to
    assert page.locator("#samples canvas").count() == 16
    settle(page)
    assert shot(page.locator("#decoded")).std() > 5  # a digit, not a blank canvas


def test_moving_a_slider_changes_the_decoded_image(page):
    settle(page)
    before = shot(page.locator("#decoded"))
    first = page.locator("#sliders input").first
    low, high = float(first.get_attribute("min")), float(first.get_attribute("max"))
    with page.expect_response("**/api/decode"):
        first.fill(str(low + 0.95 * (high - low)))
    settle(page)
    after = shot(page.locator("#decoded"))
    assert np.abs(after - before).mean() > 5
    assert page.errors == []


def test_hovering_the_map_decodes_the_point_under_the_pointer(page):
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    settle(page)
    a = shot(page.locator("#decoded"))
    page.mouse.move(box["x"] + box["width"] - 60, box["y"] + box["height"] - 60)
    settle(page)
    b = shot(page.locator("#decoded"))
    assert np.abs(a - b).mean() > 5
    assert page.locator("#decoded-source").inner_text() == "pointer"


def test_clicking_two_points_shows_an_interpolation_strip(page, live):
    labels = live.explorer.test.y
    first = 0
    second = int(np.flatnonzero(labels.numpy() != int(labels[first]))[0])  # an example of another digit
    for index in (first, second):
        x, y = page.evaluate(f"toPixel([info.map.x[{index}], info.map.y[{index}]])")
        with page.expect_response("**/api/example/*"):
            page.locator("#map").click(position={"x": x, "y": y})
    page.wait_for_selector("#interpolation:not([hidden]) #strip-slerp canvas", timeout=10_000)
    assert page.locator("#strip-linear canvas").count() == 10 and page.locator("#strip-slerp canvas").count() == 10
    assert page.locator("#picks .card").count() == 2
    assert "negative ELBO" in page.locator("#picks").inner_text() and "anomaly percentile" in page.locator("#picks").inner_text()
    strip = shot(page.locator("#strip-linear"))
    assert strip.std() > 5
    assert page.errors == []


def test_an_upload_shows_its_reconstruction(page, live, tmp_path):
    digit = (live.explorer.test.x[3, 0].numpy() * 255).round().astype(np.uint8)
    path = tmp_path / "digit.png"
    Image.fromarray(digit).resize((64, 64), Image.Resampling.NEAREST).save(path)
    with page.expect_response("**/api/encode"):
        page.locator("#upload").set_input_files(str(path))
    page.wait_for_selector("#input-result .card canvas", timeout=10_000)
    card = page.locator("#input-result .card")
    assert "percentile" in card.inner_text()
    reconstruction = shot(card.locator("canvas").nth(1))
    assert reconstruction.std() > 5
    assert page.errors == []


def test_drawing_on_the_canvas_encodes_the_drawing(page):
    box = page.locator("#draw").bounding_box()
    with page.expect_response("**/api/encode"):
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.85, steps=8)
        page.mouse.up()
    page.wait_for_function("() => document.querySelector('#input-result .card b').textContent === 'your input'")
    assert page.errors == []


def test_eight_clients_decode_concurrently_without_errors(live):
    """A small version of bench/explore_latency.py: 8 keep-alive clients x 25 decode requests."""
    L, n_clients, per_client = live.explorer.model.latent_dim, 8, 25
    latencies, failures = [], []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
        try:
            for _ in range(per_client):
                body = json.dumps({"z": [rng.normal(size=L).tolist()]})
                start = time.perf_counter()
                conn.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                latencies.append(time.perf_counter() - start)
                if response.status != 200 or json.loads(data)["n"] != 1:
                    failures.append(response.status)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(latencies) == n_clients * per_client
    print(
        f"\n8 clients x {per_client} decodes: "
        f"p50 {np.percentile(latencies, 50) * 1e3:.1f} ms, p99 {np.percentile(latencies, 99) * 1e3:.1f} ms"
    )


def test_an_unconditional_model_has_no_class_selector(page):
    assert not page.locator("#class-panel").is_visible()


@contextlib.contextmanager
def served_page(browser, explorer: Explorer):
    """A fresh page on ``explorer`` served live, once its first view is drawn; ``page.errors`` collects uncaught exceptions."""
    server = LiveServer(explorer)
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    try:
        pg = context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
        pg.goto(server.url)
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        yield pg
    finally:
        context.close()
        server.stop()


def test_a_conditional_model_decodes_and_samples_the_class_chosen_in_the_selector(browser, tmp_path_factory):
    run = tiny_run(tmp_path_factory, "cvae")
    with served_page(browser, Explorer(run, run.load_data(), context=1)) as pg:
        assert pg.locator("#class-panel").is_visible() and pg.locator("#class option").count() == 10
        assert pg.locator("#class").input_value() == "1"  # --class sets where the page starts
        settle(pg)
        decoded, samples = shot(pg.locator("#decoded")), shot(pg.locator("#samples"))
        with pg.expect_response("**/api/sample"):
            pg.locator("#class").select_option("7")
        settle(pg)
        assert np.abs(shot(pg.locator("#decoded")) - decoded).mean() > 3  # the same code, decoded as a 7
        assert np.abs(shot(pg.locator("#samples")) - samples).mean() > 3
        assert pg.errors == []


def test_a_model_of_context_columns_decodes_at_the_sliders_values(browser, ink_run):  # noqa: F811 (the imported fixture)
    with served_page(browser, Explorer(ink_run, ink_run.load_data())) as pg:
        assert not pg.locator("#class-panel").is_visible() and pg.locator("#context-panel").is_visible()
        sliders = pg.locator("#context-panel input")
        assert sliders.count() == 2 and sliders.first.get_attribute("aria-label") == "context[0]"
        settle(pg)
        decoded = shot(pg.locator("#decoded"))
        ink = sliders.first
        with pg.expect_response("**/api/sample"):
            ink.fill(ink.get_attribute("max"))  # the most ink of the training images
            ink.dispatch_event("change")
        settle(pg)
        assert shot(pg.locator("#decoded")).mean() > decoded.mean() + 3  # the same code, decoded with more ink
        shown = float(pg.locator("#context-panel output").first.inner_text())
        assert shown == pytest.approx(float(ink.get_attribute("max")), rel=1e-3)
        assert pg.errors == []


def test_without_a_browser_ci_fails_and_a_local_run_skips(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("VAEKIT_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        no_browser("no Chromium found")
    for name, value in (("CI", "true"), ("VAEKIT_REQUIRE_BROWSER", "1")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(pytest.fail.Exception, match="must run the browser tests"):
                no_browser("no Chromium found")


def test_a_molecule_model_draws_molecules_and_encodes_a_typed_smiles(browser, smiles_run, tmp_path):  # noqa: F811 (the imported fixture)
    pytest.importorskip("rdkit")
    from vaekit.runs import load

    run = load(smiles_run / "run")
    with served_page(browser, Explorer(run, run.load_data())) as pg:
        assert pg.locator("#smiles-input").is_visible() and not pg.locator("#image-input").is_visible()
        pg.wait_for_function("() => document.querySelector('#decoded-text').textContent.length > 0", timeout=10_000)
        assert pg.locator("#samples .figure .smiles").count() == 16
        from vaekit.molecules import chem

        free = pg.locator("#samples .figure .smiles").all_text_contents()
        assert pg.locator("#syntax-choice").is_visible()
        with pg.expect_response("**/api/sample"):
            pg.check("#syntax")  # new samples, kept to SMILES syntax
        pg.wait_for_function(f"() => document.querySelector('#samples .figure .smiles').textContent !== {json.dumps(free[0])}")
        kept = pg.locator("#samples .figure .smiles").all_text_contents()
        assert len(kept) == 16 and sum(chem.why_invalid(t) != "syntax" for t in kept) >= 14  # (a small model: one may be cut)
        pg.fill("#smiles", "CC(=O)Nc1ccc(O)cc1")
        pg.click("#smiles-encode")
        pg.wait_for_selector("#input-result .card canvas", timeout=10_000)
        assert pg.locator("#input-result .card .smiles").first.text_content() == "CC(=O)Nc1ccc(O)cc1"
        shot = np.asarray(Image.open(io.BytesIO(pg.locator("#input-result .card canvas").first.screenshot())).convert("L"))
        assert (shot < 100).mean() > 0.005 and (shot > 200).mean() > 0.5  # dark bonds on white: the molecule is drawn
        pg.screenshot(path=str(tmp_path / "explore-molecules.png"), full_page=True)
        assert not pg.errors
