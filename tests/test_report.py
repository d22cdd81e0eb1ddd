"""Run views (``vaekit.report.RunViews``) and the one-file HTML report: what is in them, not just that they exist."""

from __future__ import annotations

import base64
import re
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image
from test_latent import tiny_run

from vaekit import latent, plotting
from vaekit.data import Dataset
from vaekit.errors import ConfigError, DataError
from vaekit.generation import reconstruct
from vaekit.report import RunViews, write_report

IMAGE_SECTIONS = ["reconstructions", "samples", "interpolation", "traversal", "manifold"]
ALL_SECTIONS = ["config", "metrics", "curves", *IMAGE_SECTIONS, "embedding"]


def sections(page: str) -> dict[str, str]:
    """id -> inner HTML of each <section>."""
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.S))


def images(fragment: str) -> list[np.ndarray]:
    """The embedded PNGs of an HTML fragment, decoded; checks each <img> is a data URI of its stated size."""
    out = []
    for tag in re.findall(r"<img [^>]*>", fragment):
        src = re.search(r'src="data:image/png;base64,([^"]+)"', tag)
        assert src, f"image not embedded: {tag[:120]}"
        pic = np.asarray(Image.open(BytesIO(base64.b64decode(src.group(1)))).convert("RGB"))
        w, h = (int(re.search(rf'{k}="(\d+)"', tag).group(1)) for k in ("width", "height"))
        assert pic.shape[:2] == (h, w)
        out.append(pic)
    return out


@pytest.fixture(scope="module")
def vae2(tmp_path_factory):
    return tiny_run(tmp_path_factory, "vae2")


@pytest.fixture(scope="module")
def vae_report(vae2):
    path = write_report(vae2)
    return path, path.read_text(encoding="utf-8")


def test_report_is_one_self_contained_file_with_every_section(vae2, vae_report):
    path, page = vae_report
    assert path == vae2.path / "report.html"
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # opens offline: no external stylesheet, script, font or image
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert "<script" not in page and "<link" not in page
    found = sections(page)
    assert list(found) == ALL_SECTIONS
    for name in ["curves", *IMAGE_SECTIONS, "embedding"]:
        pics = images(found[name])
        assert len(pics) == 1, name
        assert pics[0].std() > 10, f"{name} figure is blank"
        assert "skipped" not in found[name]
        assert "<figcaption>" in found[name]


def test_report_numbers_match_the_run(vae2, vae_report):
    from vaekit.evaluation import elbo_terms, summarize

    _, page = vae_report
    found = sections(page)
    data = vae2.load_data()
    s = summarize(elbo_terms(vae2.model, Dataset(data.test.x), seed=0), 64)
    assert f"{s['neg_elbo']:.3f} ± {s['neg_elbo_stderr']:.3f}" in found["metrics"]
    assert f"{s['kl']:.3f}" in found["metrics"] and f"{len(data.test)} examples" in found["metrics"]
    last = vae2.metrics()[-1]
    assert f"{last['valid_neg_elbo']:.3f}" in found["metrics"]
    assert "<th>latent_dim</th><td>2</td>" in found["config"] and "<th>epochs</th><td>25</td>" in found["config"]


def test_report_figures_are_the_views(vae2, vae_report):
    _, page = vae_report
    found = sections(page)
    views = RunViews(vae2)
    assert np.array_equal(images(found["reconstructions"])[0], np.repeat(views.reconstructions(32).picture, 3, axis=2))
    assert np.array_equal(images(found["manifold"])[0], views.manifold(min_cell=28).picture)  # the grid vaekit manifold draws


def test_reconstruction_view_shows_originals_over_reconstructions(vae2):
    views = RunViews(vae2)
    view = views.reconstructions(5, cols=5)
    x = views.split.x[:5]
    expected = plotting.image_grid(torch.cat([x, reconstruct(vae2.model, Dataset(x))]), 5)
    assert np.array_equal(view.picture, expected)


def test_interpolation_view_has_the_originals_at_the_ends(vae2):
    views = RunViews(vae2)
    view = views.interpolation(0, 4, steps=6, methods=("linear", "slerp"))
    x = views.split.x
    grid = plotting.image_grid(
        torch.stack([torch.cat([x[0:1], view.result[m].images, x[4:5]]) for m in ("linear", "slerp")]).flatten(0, 1), 8
    )
    gh, gw = grid.shape[:2]
    assert np.array_equal(view.picture[-gh:, -gw:], np.repeat(grid, 3, axis=2))
    # the path starts and ends at the reconstructions of the originals
    rec = reconstruct(vae2.model, Dataset(x[[0, 4]]))
    for m in ("linear", "slerp"):
        torch.testing.assert_close(view.result[m].images[[0, -1]], rec)


def test_traversal_and_manifold_views_for_a_mixture_prior(tmp_path_factory):
    run = tiny_run(tmp_path_factory, "mixture")
    views = RunViews(run)
    trav = views.traversal(2, steps=5, at="mean")
    assert trav.result.images.shape == (2, 5, 1, 8, 8)
    base = views.reference.mean
    marg = latent.marginals(run.model.prior())
    for row, d in enumerate(trav.result.dims.tolist()):
        # the ends of each row sit at the 5% and 95% quantiles of the prior's marginal in that dimension
        with torch.no_grad():
            probs = marg.cdf(trav.result.z[row])[:, d]  # (5,)
        torch.testing.assert_close(probs[[0, -1]], torch.tensor([0.05, 0.95]), atol=1e-4, rtol=0)
        assert (probs[1:] > probs[:-1]).all()
        others = [k for k in range(3) if k != d]
        torch.testing.assert_close(trav.result.z[row][:, others], base[others].expand(5, -1))
    man = views.manifold(6)
    assert man.result.images.shape == (6, 6, 1, 8, 8)
    assert set(man.result.dims) == set(views.ranking.dims[:2].tolist())


def test_tabular_report_keeps_scatter_curves_and_metrics_and_notes_the_rest(tmp_path_factory):
    run = tiny_run(tmp_path_factory, "table")
    page = write_report(run, run.path / "elsewhere" / "r.html").read_text(encoding="utf-8")
    found = sections(page)
    assert list(found) == ALL_SECTIONS
    for name in IMAGE_SECTIONS:
        notes = re.findall(r'<p class="note">(.*?)</p>', found[name])
        assert len(notes) == 1 and "\n" not in notes[0] and "(13,)" in notes[0], name
        assert "<img" not in found[name]
    for name in ["curves", "embedding"]:
        assert images(found[name])[0].std() > 10
    assert "negative ELBO" in found["metrics"]
    with pytest.raises(ConfigError, match="images"):
        RunViews(run).traversal()


def test_autoencoder_report_samples_fitted_densities_and_shows_denoising(tmp_path_factory):
    run = tiny_run(tmp_path_factory, "dae")
    page = write_report(run).read_text(encoding="utf-8")
    found = sections(page)
    assert list(found) == [*ALL_SECTIONS, "denoising"]
    assert "autoencoder" in found["samples"] and "variance of the codes" in found["traversal"]
    den = images(found["denoising"])[0]
    assert den.std() > 10 and "gaussian noise at level 0.3" in found["denoising"]
    views = RunViews(run)
    view = views.denoising(4)
    assert view.result.mse_denoised.mean() < view.result.mse_noisy.mean()
    # the default density of an autoencoder's views is the Gaussian fitted to its training codes
    codes = latent.encode(run.model, Dataset(views.data.train.x))
    torch.testing.assert_close(views.reference.mean, codes.mean(0), atol=1e-5, rtol=0)


def test_denoising_needs_a_noise_for_a_model_trained_without(vae2):
    views = RunViews(vae2)
    with pytest.raises(ConfigError, match="without input noise"):
        views.denoising(4)
    view = views.denoising(4, noise="mask", level=0.3)
    assert view.picture.std() > 10 and len(view.result.clean) == 4


def test_conv_views_of_colour_images(tmp_path_factory):
    run = tiny_run(tmp_path_factory, "conv_rgb")
    views = RunViews(run)
    rec = views.reconstructions(4, cols=4)
    assert rec.picture.shape == (2 * 58 + 2, 4 * 58 + 2, 3)
    sat = rec.picture.max(2).astype(int) - rec.picture.min(2).astype(int)
    assert (sat > 60).mean() > 0.05  # colour survives the round trip
    trav = views.traversal(3, steps=4)
    assert trav.result.images.shape == (3, 4, 3, 8, 8)
    samples = views.samples(9)
    assert samples.picture.shape == (3 * 58 + 2, 3 * 58 + 2, 3)


def test_examples_are_checked(vae2):
    views = RunViews(vae2)
    with pytest.raises(ConfigError, match="out of range"):
        views.example(10_000)
    with pytest.raises(DataError, match="does not fit"):
        views.example(torch.zeros(1, 28, 28))
    x, name = views.example(-1)
    assert torch.equal(x, views.split.x[-1]) and name.startswith("test #")


def test_the_configuration_block_shows_the_settings_that_took_effect():
    from types import SimpleNamespace

    from vaekit.config import RunConfig
    from vaekit.report import config_html

    normal, mixture = RunConfig(), RunConfig()
    mixture.model.prior, mixture.train.lr_patience = "mixture", 5
    shown, shown_mixture = config_html(SimpleNamespace(config=normal)), config_html(SimpleNamespace(config=mixture))
    assert "<th>prior_components</th>" not in shown and "<th>prior_components</th><td>10</td>" in shown_mixture
    assert "<th>min_lr</th>" not in shown and "<th>min_lr</th>" in shown_mixture  # the plateau rule's floor, with the rule
    assert "<th>flow_steps</th>" not in shown and "<th>iw_groups</th>" not in shown and "<th>latent_dim</th><td>2</td>" in shown
