"""Presets: every shipped preset loads, validates and builds; --preset with a flag override; ``vaekit presets``."""

import json

import pytest

from vaekit import presets
from vaekit.cli import build_parser, main
from vaekit.cli.train import config_from_args
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.settings import check

EXPECTED = {
    "vae-static-mnist",
    "iwae-static-mnist",
    "iwae-gated-static-mnist",
    "vampprior-static-mnist",
    "conv-vampprior-static-mnist",
    "b1-binarized-mnist",
    "hvae-static-mnist",
    "hvae-vampprior-static-mnist",
    "iwae2-static-mnist",
}


def test_the_literature_presets_ship():
    assert EXPECTED <= set(presets.names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_loads_validates_and_builds(name):
    preset = presets.load(name)
    assert preset.description and preset.reproduces and preset.literature_source
    config = preset.config()
    config.model.input_shape = (1, 28, 28)  # what binarized MNIST fills in
    check(config)
    model = build_model(config.model)
    assert model.latent_dim == config.model.latent_dim
    assert config.data.source == "binarized-mnist"


def test_vampprior_preset_has_the_papers_settings():
    config = presets.load("vampprior-static-mnist").config()
    m, t = config.model, config.train
    assert (m.arch, m.hidden, m.latent_dim, m.prior, m.prior_components) == ("gated", (300, 300), 40, "vampprior", 500)
    assert (t.lr, t.batch_size, t.warmup_epochs, t.patience, t.epochs) == (5e-4, 100, 100, 50, 2000)
    iwae = presets.load("iwae-static-mnist").config().train
    assert iwae.objective == "iw" and iwae.n_samples == 50
    assert (iwae.lr, iwae.lr_patience, iwae.lr_factor, iwae.min_lr) == (1e-3, 10, 0.5, 1e-5)  # below the paper's 1e-4 floor
    hvae_vamp = presets.load("hvae-vampprior-static-mnist").config()
    hvae = hvae_vamp.model
    assert (hvae.latent_layers, hvae.hierarchy, hvae.latent_hidden, hvae.prior) == ((40, 40), "skip", (300, 300), "vampprior")
    assert (hvae_vamp.train.n_samples, hvae_vamp.train.objective) == (5, "elbo")  # the ELBO averaged over 5 samples
    assert hvae.dropout == (0.0, 0.1)  # the decoder's hidden units only
    gated = presets.load("iwae-gated-static-mnist").config()
    assert (gated.model.arch, gated.model.hidden, gated.model.latent_dim) == ("gated", (300, 300), 50)
    assert (gated.train.n_samples, gated.train.objective, gated.train.ema, gated.train.lr_patience) == (50, "iw", 0.9998, 4)
    iwae2 = presets.load("iwae2-static-mnist").config().model
    assert (iwae2.latent_layers, iwae2.hierarchy, iwae2.hidden, iwae2.latent_hidden) == ((100, 50), "chain", (200, 200), (100, 100))


def test_preset_with_flag_overrides_reaches_the_config():
    args = build_parser().parse_args(["train", "--preset", "vampprior-static-mnist", "--epochs", "3", "--prior-components", "7"])
    config = config_from_args(args)
    assert config.train.epochs == 3 and config.model.prior_components == 7
    assert config.model.arch == "gated" and config.train.lr == 5e-4  # the rest from the preset


def test_unknown_preset_and_preset_with_config_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose one of"):
        presets.load("nope")
    assert main(["train", "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    path = tmp_path / "c.json"
    path.write_text("{}")
    assert main(["train", "--preset", "vae-static-mnist", "--config", str(path), "--out", str(tmp_path / "r")]) == 2


def test_presets_command_lists_each_with_what_it_reproduces(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert name in out
    assert "85.57" in out and "Tomczak & Welling 2018" in out
    assert main(["presets", "vampprior-static-mnist"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model"]["prior"] == "vampprior"


def test_preset_trains_end_to_end_on_digits_with_overrides(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--preset",
            "vampprior-static-mnist",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--hidden",
            "16",
            "16",
            "--latent-dim",
            "2",
            "--prior-components",
            "5",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["arch"] == "gated" and saved["model"]["prior"] == "vampprior" and saved["data"]["source"] == "digits"
    assert main(["evaluate", str(out), "--iw-samples", "5", "--no-pca", "--quiet"]) == 0
    assert json.loads((out / "eval-test.json").read_text())["iw"]["k"] == 5
