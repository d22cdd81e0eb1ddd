"""``vaekit disentanglement`` end to end on dSprites-like data: a study-network run trained for a few
dozen steps is scored by every metric (small sample counts), its units are drawn labelled by factor
(the traversal and the information heat map, in the command, the report and the explorer's
sliders), and the bad requests each give one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.cli.disentanglement import parse_settings
from vaekit.disentanglement import METRICS
from vaekit.errors import ConfigError
from vaekit.report import write_report
from vaekit.report.run_views import RunViews

from helpers import SMALL_RUN_FLAGS

LATENT = 4
FEW = ["num_train=400", "num_test=200", "num_eval=100", "num_variance=400", "batch_size=16"]  # sample counts small enough for CI


@pytest.fixture(scope="module")
def dsprites_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dsprites") / "run"
    flags = "--dataset dsprites --valid-fraction 0.002 --arch study-conv --objective beta-tcvae --beta 4 --batch-size 32 --lr 1e-3"
    flags += f" --latent-dim {LATENT} --epochs 2 --epoch-steps 15 --threads 1 --quiet --out {out}"
    assert main(["train", *flags.split()]) == 0
    return out


def test_a_run_is_scored_by_every_metric_with_its_settings_and_seed(dsprites_run, capsys):
    assert main(["disentanglement", str(dsprites_run), "--set", *FEW, "dci.estimator=lasso", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((dsprites_run / "disentanglement.json").read_text())
    assert set(result["metrics"]) == set(METRICS.names()) and result["codes"] == "mean"
    assert result["factors"] == ["shape", "scale", "orientation", "position_x", "position_y"] and result["dropped_factors"] == ["color"]
    for name, metric in result["metrics"].items():
        assert metric["settings"]["seed"] == 3 and name in printed
        assert all(np.isfinite(v) for v in metric["scores"].values())
    assert result["metrics"]["dci"]["settings"]["estimator"] == "lasso" and result["metrics"]["mig"]["settings"]["num_train"] == 400
    assert 0 <= result["metrics"]["mig"]["scores"]["mig"] <= 1
    assert "num_train=400" in printed and "estimator=lasso" in printed  # every setting is printed with the result


def test_the_units_are_drawn_labelled_by_the_factor_they_capture(dsprites_run, tmp_path):
    run = vaekit.load(dsprites_run)
    views = RunViews(run, split="valid")
    info = views.factor_information().result
    assert info.normalized.shape == (LATENT, 5) and np.all(info.normalized >= 0) and np.all(info.normalized <= 1.0 + 1e-9)
    assert info.factors == ("shape", "scale", "orientation", "position_x", "position_y")
    traversal = views.factor_traversal(steps=5)
    assert sorted(traversal.result.dims.tolist()) == list(range(LATENT))  # every unit, ranked by KL
    assert traversal.result.images.shape == (LATENT, 5, 1, 64, 64)
    picture = traversal.picture
    assert picture.shape[2] == 3 and (picture < 128).any() and (picture > 128).any()  # the labels' text and the grid
    page = write_report(run, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Units and factors" in page and "What each unit knows" in page
    assert 'id="factor-traversal"' in page and 'class="note"' not in page.split('id="factor-traversal"')[1].split("</section>")[0]


def test_the_command_writes_both_figures(dsprites_run, capsys):
    assert main(["disentanglement", str(dsprites_run), "--metrics", "mig", "--set", "num_train=300", "--figures"]) == 0
    from PIL import Image

    for name in ("factor-traversal", "factor-information"):
        picture = np.asarray(Image.open(dsprites_run / "figures" / f"{name}.png"))
        assert picture.shape[0] > 200 and picture.std() > 10
    assert "factor-traversal.png" in capsys.readouterr().out


def test_the_explorer_labels_its_sliders_by_factor(dsprites_run):
    from vaekit.explore import Explorer

    run = vaekit.load(dsprites_run)
    data = run.load_data()
    small = dataclasses.replace(data, train=data.train.rows(0, 500), valid=data.valid.rows(0, 300))  # the factors' record stays
    factors = Explorer(run, small).describe()["dims"]["factors"]
    assert len(factors) == LATENT and all(
        f is None or f.split()[0] in ("shape", "scale", "orientation", "position_x", "position_y") for f in factors
    )


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_requests_get_one_line(tmp_path, capsys, dsprites_run):
    digits = tmp_path / "digits"
    assert main(["train", *SMALL_RUN_FLAGS, "--epochs", "1", "--out", str(digits)]) == 0
    assert "no known factors of variation" in one_line_error(capsys, ["disentanglement", str(digits)])
    ae = tmp_path / "ae"
    assert main(["train", *SMALL_RUN_FLAGS, "--epochs", "1", "--model", "ae", "--out", str(ae)]) == 0
    assert "no posterior to draw codes from" in one_line_error(capsys, ["disentanglement", str(ae), "--codes", "sample"])
    assert "unknown disentanglement metric" in one_line_error(capsys, ["disentanglement", str(dsprites_run), "--metrics", "nope"])
    assert "KEY=VALUE" in one_line_error(capsys, ["disentanglement", str(dsprites_run), "--set", "num_train"])
    assert "unknown setting" in one_line_error(capsys, ["disentanglement", str(dsprites_run), "--set", "colour=3"])
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in one_line_error(capsys, ["disentanglement", str(dsprites_run), "--device", "cuda"])


def test_settings_are_read_as_numbers_or_words():
    assert parse_settings(["num_train=2000", "dci.estimator=sklearn-default", "mig.num_train=all"]) == {
        "num_train": 2000,
        "dci": {"estimator": "sklearn-default"},
        "mig": {"num_train": "all"},
    }
    with pytest.raises(ConfigError):
        parse_settings(["=3"])


def test_an_encoded_grid_gives_the_scores_of_encoding_every_draw():
    """Where the metrics draw more images than the grid holds, ``score`` encodes each image once and looks
    the codes up: the same scores as encoding every draw."""
    import torch

    from vaekit.data.factors import FactorSpace, grid_classes
    from vaekit.disentanglement import evaluate
    from vaekit.disentanglement.runs import EncodedGrid

    sizes = (3, 4, 5, 6)
    x = torch.from_numpy(grid_classes(np.arange(np.prod(sizes)), sizes)).float().view(-1, 4, 1, 1)  # each image its factors
    space = FactorSpace.grid(["a", "b", "c", "d"], sizes, x)
    mixing = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    calls = []

    def encode(images: torch.Tensor) -> np.ndarray:
        calls.append(len(images))
        return (images.flatten(1) @ mixing).numpy()

    few = {"num_train": 300, "num_eval": 100, "num_variance": 300, "batch_size": 8}
    direct = evaluate(space, encode, ["beta_vae", "factor_vae", "mig"], **few)
    drawn, calls[:] = sum(calls), []
    seen = []
    grid = EncodedGrid.of(space, encode, chunk=50, progress=lambda done, total: seen.append((done, total)))
    assert sum(calls) == len(space) == 360 < drawn
    assert seen[0] == (50, 360) and seen[-1] == (360, 360) and len(seen) == 8  # progress after each chunk
    looked_up = evaluate(grid, grid.encode, ["beta_vae", "factor_vae", "mig"], **few)
    assert {k: m["scores"] for k, m in looked_up["metrics"].items()} == {k: m["scores"] for k, m in direct["metrics"].items()}


@pytest.mark.parametrize(
    "objective",
    [
        ["--objective", "elbo", "--beta", "4"],
        ["--objective", "beta-tcvae", "--tc-estimator", "mws"],
        ["--objective", "factor-vae", "--discriminator-hidden", "32", "32"],
        ["--objective", "dip-vae-i"],
        ["--objective", "dip-vae-ii"],
        ["--objective", "annealed-vae", "--capacity-steps", "20"],
    ],
    ids=lambda flags: flags[1] + ("-beta4" if "--beta" in flags else ""),
)
def test_each_model_of_the_study_trains_on_dsprites_and_is_scored(objective, tmp_path, capsys):
    out = tmp_path / "run"
    flags = f"--dataset dsprites --valid-fraction 0.001 --arch mlp --hidden 32 --latent-dim {LATENT} --batch-size 32 --lr 1e-3"
    flags += " --epochs 2 --epoch-steps 10 --threads 1 --quiet"
    assert (
        main(["train", *flags.split(), *objective, "--epochs", "2", "--epoch-steps", "10", "--threads", "1", "--quiet", "--out", str(out)])
        == 0
    )
    rows = vaekit.load(out).metrics()
    assert [r["step"] for r in rows] == [10, 20] and all(np.isfinite(r["valid_neg_elbo"]) for r in rows)
    assert main(["disentanglement", str(out), "--metrics", "mig", "factor_vae", "--set", *FEW]) == 0
    result = json.loads((out / "disentanglement.json").read_text())
    assert 0 <= result["metrics"]["mig"]["scores"]["mig"] <= 1 and 0 <= result["metrics"]["factor_vae"]["scores"]["eval_accuracy"] <= 1
