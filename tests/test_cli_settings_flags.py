"""``vaekit train``'s settings flags come from the config dataclasses' field metadata: every field says
how it is set (a flag, or none), each flag sets its field and only where given, and the checks that
need the parts' facts are made from them."""

import dataclasses

import pytest

from vaekit.cli import build_parser
from vaekit.cli.settings_flags import REGISTRIES, setting_flags
from vaekit.cli.train import config_from_args
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, validate
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.settings import check

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
NO_FLAG = {
    ("model", "input_shape"),
    ("model", "latent_layers"),
    ("model", "context_dim"),
    ("model", "vocabulary_size"),
}  # filled from the data, or by --latent-dim


def parse(*argv: str):
    return build_parser(full=["train"]).parse_args(["train", *argv])


@pytest.mark.parametrize("section", SECTIONS)
def test_every_setting_has_a_flag_or_says_it_has_none(section):
    """A new setting cannot be forgotten: its field's metadata gives its flag, or marks it as having none."""
    for f in dataclasses.fields(SECTIONS[section]):
        assert "flag" in f.metadata, f"{section}.{f.name}: give it metadata=flag(...) or metadata=NO_FLAG"
        assert (f.metadata["flag"] is None) == ((section, f.name) in NO_FLAG), f"{section}.{f.name}"


def test_flags_are_distinct_and_name_the_registries_the_command_line_knows():
    flags = setting_flags()
    assert len({f.option for f in flags}) == len(flags) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values()) - len(NO_FLAG)
    for flag in flags:
        for key in ("choices", "names"):
            if isinstance(flag.spec[key], str):
                assert flag.spec[key] in REGISTRIES, flag.option
    renamed = {f.option: f.name for f in flags if f.option != "--" + f.name.replace("_", "-")}
    assert renamed == {
        "--dataset": "source",
        "--binarize": "dynamic_binarize",
        "--on-codes": "codes_of",
        "--model": "kind",
        "--sigma": "likelihood_scale",
        "--warmup": "warmup_epochs",
        "--samples": "n_samples",
    }


def test_flags_left_out_leave_the_config_alone(tmp_path):
    args = parse()
    assert all(getattr(args, flag.dest) is None for flag in setting_flags())
    assert config_from_args(args) == RunConfig()
    start = RunConfig()
    start.train.lr, start.model.likelihood = 3e-4, "gaussian"
    path = tmp_path / "config.json"
    path.write_text(start.to_json())
    config = config_from_args(parse("--config", str(path), "--epochs", "3"))
    assert (config.train.lr, config.model.likelihood, config.train.epochs) == (3e-4, "gaussian", 3)


def test_each_kind_of_flag_reaches_its_field():
    config = config_from_args(
        parse(
            *["--dataset", "digits", "--binarize", "--no-memmap", "--image-size", "8", "8"],
            *["--model", "vae", "--latent-dim", "2", "3", "--logvar-range", "-6", "2", "--likelihood", "gaussian", "--sigma", "0.5"],
            *["--warmup", "4", "--samples", "2", "--adam-betas", "0.5", "0.9", "--nonfinite", "skip", "--no-init-decoder-bias"],
        )
    )
    d, m, t = config.data, config.model, config.train
    assert (d.source, d.dynamic_binarize, d.memmap, d.image_size) == ("digits", True, False, (8, 8))
    assert (m.latent_dim, m.latent_layers, m.logvar_range, m.likelihood_scale) == (5, (2, 3), (-6.0, 2.0), 0.5)
    assert (t.warmup_epochs, t.n_samples, t.adam_betas, t.nonfinite, t.init_decoder_bias) == (4, 2, (0.5, 0.9), "skip", False)


def test_the_shorthands_still_set_two_settings():
    config = config_from_args(parse("--iw-samples", "5", "--arch", "conv"))
    assert (config.train.objective, config.train.n_samples, config.model.hidden) == ("iw", 5, (32, 64))
    assert config_from_args(parse("--context-columns", "a", "b")).model.condition == "columns"


def test_argparse_refuses_what_the_metadata_forbids(capsys):
    for argv in (["--image-size", "0", "8"], ["--prior", "nope"], ["--flow", "nope"], ["--precision", "fp16"], ["--download", "yes"]):
        with pytest.raises(SystemExit):
            parse(*argv)
    assert "expected a number >= 1, got 0" in capsys.readouterr().err


def test_checks_that_need_the_parts_facts():
    conv = RunConfig(model=ModelConfig(arch="conv", hidden=()))
    validate(conv)  # each value alone is fine
    for checked in (lambda: check(conv), lambda: build_model(conv.model)):
        with pytest.raises(ConfigError, match="a conv model needs at least one channel stage"):
            checked()
    check(RunConfig(model=ModelConfig(arch="gated", hidden=())))  # a dense network without hidden layers: a linear one
    labelled = RunConfig(data=DataConfig(context_columns=("a",)), model=ModelConfig(condition="label"))
    validate(labelled)
    with pytest.raises(ConfigError, match="context columns are the context of --condition columns, not --condition label"):
        check(labelled)
    check(RunConfig(data=DataConfig(context_columns=("a",)), model=ModelConfig(condition="columns")))
    iw = RunConfig(train=TrainConfig(objective="iw", n_samples=6, iw_groups=4))
    validate(iw)
    with pytest.raises(ConfigError, match="iw groups"):  # the objective's own check
        check(iw)
