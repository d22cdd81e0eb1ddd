"""Lossless bits-back coding and lossy latent codes: round trips on every supported likelihood,
rates against the negative ELBO, determinism across processes, thread counts and batch sizes."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import vaekit
from vaekit.compression import CompressionError, compress, decompress
from vaekit.compression.exact import ExactModel
from vaekit.compression.lossy import compress_lossy
from vaekit.config import RunConfig
from vaekit.data import load_data
from vaekit.data.base import BINARY, Dataset, DataSplits

LIKELIHOODS = ["bernoulli", "beta-binomial", "discretized-logistic"]


def tiny_model(likelihood: str, seed: int = 0, latent_dim: int = 3):
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.latent_dim, cfg.model.hidden, cfg.model.likelihood = (1, 6, 5), latent_dim, (16,), likelihood
    torch.manual_seed(seed)
    return vaekit.build_model(cfg.model).eval()


def data_for(likelihood: str, n: int = 40, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if likelihood == "bernoulli":
        return (torch.rand(n, 1, 6, 5, generator=g) < 0.3).to(dtype)
    k = torch.randint(0, 256, (n, 1, 6, 5), generator=g)
    return k.to(torch.uint8) if dtype == torch.uint8 else k.to(dtype) / 255


@pytest.fixture(scope="module")
def binary_digits():
    """The embedded digits, binarized at 0.5: (N, 1, 8, 8) in {0, 1}."""
    d = load_data("digits")

    def b(s):
        return Dataset((s.x > 0.5).float(), s.y)

    return DataSplits(b(d.train), b(d.valid), b(d.test), {**d.info, "value_range": BINARY})


@pytest.fixture(scope="module")
def trained(binary_digits):
    """A small VAE (8x8 binary digits, MLP 64, 4 latents) fitted by 100 full-batch Adam steps (under a second on an idle core)."""
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.latent_dim, cfg.model.hidden = (1, 8, 8), 4, (64,)
    torch.manual_seed(0)
    return fit(vaekit.build_model(cfg.model), binary_digits.train.x, 100)


def fit(model, x: torch.Tensor, steps: int):
    """``model`` fitted to ``x`` by ``steps`` full-batch Adam steps, in eval mode."""
    model.init_output_bias(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        vaekit.elbo(model, x).neg_elbo.mean().backward()
        opt.step()
    return model.eval()


def check_file_is_its_negative_elbo(model, x: torch.Tensor, tolerance: float = 0.02) -> None:
    """The file's bits, net of the initial bits, within ``tolerance`` of the negative ELBO; it decodes to x."""
    data = compress(model, x)
    header, words = vaekit.compression.format.read(data)
    with torch.inference_mode():
        neg_elbo = vaekit.elbo(model, x, n_samples=20).neg_elbo.sum().item() / math.log(2)  # bits
    net = 32 * len(words) - header.initial_bits
    assert abs(net / neg_elbo - 1) < tolerance, (net, neg_elbo)
    assert torch.equal(decompress(model, data), x)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_round_trip_bit_for_bit(likelihood, dtype):
    model, x = tiny_model(likelihood), data_for(likelihood, dtype=dtype)
    y = decompress(model, compress(model, x, batch_size=16))
    assert y.dtype == x.dtype and torch.equal(y, x)


def test_rate_within_two_percent_of_neg_elbo(trained, binary_digits):
    check_file_is_its_negative_elbo(trained, torch.cat([binary_digits.train.x, binary_digits.test.x]))


def test_exact_outputs_do_not_depend_on_batch_or_threads(trained, binary_digits):
    exact, x = ExactModel(trained), binary_digits.test.x.double()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        mu_all, lv_all = exact.posterior_layers(x).gaussian(0, None)
        torch.set_num_threads(2)
        mu_few, lv_few = exact.posterior_layers(x[3:10]).gaussian(0, None)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(mu_all[3:10], mu_few) and np.array_equal(lv_all[3:10], lv_few)
    z = np.round(mu_all * 2**16) / 2**16
    assert np.array_equal(exact.decoder_params(z)[5:9], exact.decoder_params(z[5:9]))


def test_decodes_in_a_fresh_process_with_other_threads(trained, binary_digits, tmp_path):
    """Encode with one thread and batches of 50 (bernoulli) or 7 (beta-binomial, a two-layer model);
    decode in a new interpreter with two threads."""
    import dataclasses
    import json

    from safetensors.torch import save_file

    cases = {
        "bern": (trained, binary_digits.test.x[:100], 50),
        "bb": (tiny_model("beta-binomial"), data_for("beta-binomial", n=30), 7),
        "hvae": (hierarchical_model("skip"), data_for("bernoulli", n=30), 7),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, (m, x, batch) in cases.items():
            (tmp_path / f"{name}.vkz").write_bytes(compress(m, x, batch_size=batch))
            np.save(tmp_path / f"{name}.npy", x.numpy())
            (tmp_path / f"{name}.json").write_text(json.dumps(dataclasses.asdict(m.config)))
            save_file(m.state_dict(), tmp_path / f"{name}.safetensors")
    finally:
        torch.set_num_threads(threads)
    script = textwrap.dedent(f"""
        import json, numpy as np, torch
        torch.set_num_threads(2)
        from safetensors.torch import load_file
        import vaekit
        from vaekit.config import ModelConfig
        for name in ("bern", "bb", "hvae"):
            base = r"{tmp_path}/" + name
            cfg = ModelConfig(**{{k: tuple(v) if isinstance(v, list) else v for k, v in json.load(open(base + ".json")).items()}})
            m = vaekit.build_model(cfg); m.load_state_dict(load_file(base + ".safetensors")); m.eval()
            y = vaekit.decompress(m, open(base + ".vkz", "rb").read())
            assert torch.equal(y, torch.from_numpy(np.load(base + ".npy"))), name
        print("ok")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "2"}
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_batch_size_does_not_change_the_data(trained, binary_digits):
    x = binary_digits.test.x[:100]
    assert torch.equal(decompress(trained, compress(trained, x, batch_size=7)), x)
    assert torch.equal(decompress(trained, compress(trained, x, batch_size=1000)), x)


def test_one_example_and_initial_bits():
    model, x = tiny_model("bernoulli"), data_for("bernoulli", n=1)
    data = compress(model, x)
    header, _ = vaekit.compression.format.read(data)
    assert header.batches == [1] and header.initial_bits > 0
    assert torch.equal(decompress(model, data), x)


@pytest.mark.parametrize("likelihood", ["beta-binomial", "discretized-logistic"])
def test_discretized_heads_are_normalised(likelihood):
    model = tiny_model(likelihood)
    with torch.inference_mode():
        px = model.decode(torch.randn(2, 3))
        levels = torch.arange(256.0).view(256, 1, 1, 1, 1) / 255  # (256, 1, 1, 1, 1) against batch (2,)
        log_p = px.base_dist.log_prob(levels.expand(256, 2, 1, 6, 5))  # (256, 2, 1, 6, 5)
    assert torch.allclose(log_p.exp().sum(0), torch.ones(2, 1, 6, 5, dtype=log_p.dtype), atol=1e-3)  # float32 lgamma
    assert px.mean.shape == (2, 1, 6, 5) and px.sample().shape == (2, 1, 6, 5)


def test_values_off_the_levels_are_refused():
    with pytest.raises(CompressionError, match="other than 0 and 1"):
        compress(tiny_model("bernoulli"), torch.full((2, 1, 6, 5), 0.5))
    with pytest.raises(CompressionError, match="8-bit"):
        compress(tiny_model("beta-binomial"), torch.full((2, 1, 6, 5), 0.3))
    with pytest.raises(CompressionError, match="shape"):
        compress(tiny_model("bernoulli"), torch.zeros(2, 30))


def test_unsupported_models_are_refused():
    with pytest.raises(CompressionError, match="discrete likelihood"):
        compress(tiny_model("gaussian"), torch.zeros(2, 1, 6, 5))
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.kind = (1, 6, 5), "ae"
    with pytest.raises(CompressionError, match="VAE"):
        compress(vaekit.build_model(cfg.model), torch.zeros(2, 1, 6, 5))
    cfg.model.kind, cfg.model.prior = "vae", "mixture"
    with pytest.raises(CompressionError, match="standard normal prior; this model has 'mixture'"):
        compress(vaekit.build_model(cfg.model), torch.zeros(2, 1, 6, 5))


def hierarchical_model(hierarchy: str, likelihood: str = "bernoulli", shape=(1, 6, 5), prior: str = "normal"):
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.hidden, cfg.model.likelihood = shape, (16,), likelihood
    cfg.model.latent_dim, cfg.model.latent_layers, cfg.model.latent_hidden = 5, (3, 2), (8,)
    cfg.model.hierarchy, cfg.model.prior, cfg.model.prior_components = hierarchy, prior, 3
    torch.manual_seed(0)
    return vaekit.build_model(cfg.model).eval()


@pytest.mark.parametrize("hierarchy", ["skip", "branched", "chain"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "beta-binomial"])
def test_a_hierarchical_model_round_trips_bit_for_bit(hierarchy, likelihood):
    model, x = hierarchical_model(hierarchy, likelihood), data_for(likelihood, n=30)
    for batch in (1, 7, 1000):
        data = compress(model, x, batch_size=batch)
        assert torch.equal(decompress(model, data), x), batch


@pytest.mark.parametrize("hierarchy", ["skip", "chain"])
def test_a_trained_hierarchical_models_file_is_its_negative_elbo(binary_digits, hierarchy):
    """Coding every layer with its own Gaussian (q's and p's conditionals) costs the two-layer negative ELBO."""
    model = fit(hierarchical_model(hierarchy, shape=(1, 8, 8)), binary_digits.train.x, 150)
    check_file_is_its_negative_elbo(model, torch.cat([binary_digits.train.x, binary_digits.test.x]))


def test_layers_whose_prior_parent_q_decodes_first_are_coded_in_their_priors_frame():
    """skip: q decodes z_2 before z_1, so z_1's buckets are equal-mass under p(z_1|z_2); chain: q decodes z_1 first."""
    from vaekit.compression.codec import _parts

    assert _parts(hierarchical_model("skip"), 12).coder.adapted == {0}
    assert _parts(hierarchical_model("chain"), 12).coder.adapted == set()
    assert _parts(tiny_model("bernoulli"), 12).coder.adapted == set()


def test_a_markov_chain_hierarchy_is_coded_in_bit_swap_order_with_one_layers_initial_bits():
    """chain (q and p Markov, p(x|z_1)): Bit-Swap order, initial bits for its largest layer (3 units), not all 5."""
    from vaekit.compression.bitsback import initial_words
    from vaekit.compression.codec import _parts

    chain, skip = hierarchical_model("chain"), hierarchical_model("skip")
    assert _parts(chain, 12).coder.bit_swap and not _parts(skip, 12).coder.bit_swap
    x = data_for("bernoulli", n=1)
    headers = {name: vaekit.compression.format.read(compress(m, x))[0] for name, m in (("chain", chain), ("skip", skip))}
    assert headers["chain"].initial_bits == 32 * len(initial_words(3)) < headers["skip"].initial_bits == 32 * len(initial_words(5))
    for n in (1, 2, 30):
        x = data_for("bernoulli", n=n, seed=n)
        assert torch.equal(decompress(chain, compress(chain, x, batch_size=4)), x), n


def test_bit_swap_decoding_runs_the_encoder_once_per_example():
    """The layers above z_1 read no x, so decoding builds them without an encoder pass."""
    chain, x = hierarchical_model("chain"), data_for("bernoulli", n=30)
    blob = compress(chain, x, batch_size=4)
    rows = []
    chain.encoder.register_forward_hook(lambda module, inputs, out: rows.append(len(out)))  # the coder's float64 copy keeps it
    assert torch.equal(decompress(chain, blob), x)
    assert sum(rows) == 30


def conditional_model(prior: str = "normal", layers: tuple[int, ...] = (), hierarchy: str = "skip", classes: int = 4):
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.hidden, cfg.model.condition, cfg.model.context_dim = (1, 6, 5), (16,), "label", classes
    cfg.model.latent_dim, cfg.model.latent_layers, cfg.model.prior, cfg.model.hierarchy = sum(layers) or 3, layers, prior, hierarchy
    cfg.model.latent_hidden = (8,) if layers else None
    torch.manual_seed(0)
    return vaekit.build_model(cfg.model).eval()


@pytest.mark.parametrize(
    "prior, layers, hierarchy",
    [("normal", (), "skip"), ("conditional", (), "skip"), ("normal", (3, 2), "skip"), ("normal", (3, 2), "chain")],
)
def test_a_conditional_models_file_carries_the_labels(prior, layers, hierarchy):
    model, x = conditional_model(prior, layers, hierarchy), data_for("bernoulli", n=30)
    y = torch.arange(30) % 4
    for batch in (1, 7, 1000):
        data = compress(model, x, labels=y, batch_size=batch)
        back, labels = decompress(model, data, with_labels=True)
        assert torch.equal(back, x) and torch.equal(labels, y), batch
    assert vaekit.compression.format.read(data)[0].classes == 4 and torch.equal(decompress(model, data), x)


def test_a_trained_cvaes_file_is_its_negative_elbo_given_the_labels_plus_the_labels(binary_digits):
    """-log p(x|y) by bits-back, plus log2(10) bits a label: the conditional prior p(z|y) codes z in its own frame."""
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.latent_dim, cfg.model.hidden = (1, 8, 8), 4, (64,)
    cfg.model.condition, cfg.model.context_dim, cfg.model.prior = "label", 10, "conditional"
    torch.manual_seed(0)
    model = vaekit.build_model(cfg.model)
    x, y = binary_digits.train.x, binary_digits.train.y
    model.init_output_bias(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        vaekit.elbo(model, x, context=y).neg_elbo.mean().backward()
        opt.step()
    model.eval()
    data = compress(model, x, labels=y)
    header, words = vaekit.compression.format.read(data)
    with torch.inference_mode():
        neg_elbo = vaekit.elbo(model, x, n_samples=20, context=y).neg_elbo.sum().item() / math.log(2) + len(x) * math.log2(10)
    net = 32 * len(words) - header.initial_bits
    assert abs(net / neg_elbo - 1) < 0.02, (net, neg_elbo)
    back, labels = decompress(model, data, with_labels=True)
    assert torch.equal(back, x) and torch.equal(labels, y)


def test_labels_must_fit_the_model():
    model, x = conditional_model(), data_for("bernoulli", n=4)
    for labels, message in (
        (None, "give the examples' labels"),
        (torch.tensor([0, 1, 2, 4]), "0..3"),
        (torch.zeros(3, dtype=torch.long), "4 integer labels"),
    ):
        with pytest.raises(CompressionError, match=message):
            compress(model, x, labels=labels)
    with pytest.raises(CompressionError, match="not conditioned"):
        compress(tiny_model("bernoulli"), x, labels=torch.zeros(4, dtype=torch.long))
    cfg = RunConfig()
    cfg.model.input_shape, cfg.model.condition, cfg.model.context_dim = (1, 6, 5), "columns", 2
    with pytest.raises(CompressionError, match="context columns"):
        compress(vaekit.build_model(cfg.model), x)


def test_hierarchical_models_the_coder_cannot_take_are_refused():
    with pytest.raises(CompressionError, match="standard normal prior on the top layer"):
        compress(hierarchical_model("skip", prior="vampprior"), data_for("bernoulli", n=2))
    with pytest.raises(CompressionError, match="lossy compression needs one latent layer"):
        compress_lossy(hierarchical_model("skip"), data_for("bernoulli", n=2))


def test_lossy_codes(trained, binary_digits):
    x = binary_digits.test.x
    small, large = compress_lossy(trained, x, latent_bits=2), compress_lossy(trained, x, latent_bits=8)
    h, _ = vaekit.compression.format.read(large)
    assert 1 <= len(h.active) <= 4
    y2, y8 = decompress(trained, small), decompress(trained, large)
    assert y8.shape == x.shape and y8.dtype == x.dtype
    assert ((y8 - x) ** 2).mean() < ((y2 - x) ** 2).mean()
    assert len(large) > len(small)


def test_code_length_kinds():
    from vaekit.compression.rate import code_length, dequantize, is_8bit

    x8 = data_for("beta-binomial")
    gauss = tiny_model("gaussian-learned")
    with torch.inference_mode():
        ne = vaekit.elbo(gauss, x8).neg_elbo
    deq = code_length(gauss, x8, ne)
    assert deq["kind"] == "dequantized" and deq["bits_per_dim"] > 0 and "dequantized" in deq["note"]
    assert code_length(gauss, torch.rand(4, 1, 6, 5), ne[:4])["kind"] == "none"
    bern = tiny_model("bernoulli")
    xb = data_for("bernoulli")
    ne = torch.full((len(xb),), 30 * math.log(2))
    assert code_length(bern, xb, ne) == {**code_length(bern, xb, ne), "kind": "bits-back", "bits_per_dim": pytest.approx(1.0)}
    y = dequantize(x8, torch.Generator().manual_seed(0))
    k = torch.round(x8 * 255)
    assert is_8bit(x8) and not is_8bit(y) and bool(((y * 256 >= k) & (y * 256 < k + 1)).all())


def test_discretized_heads_against_references():
    """log P(k) against scipy's beta-binomial and against logistic CDF differences, in float64."""
    from scipy.stats import betabinom, logistic

    from vaekit.models.distributions import BetaBinomial, DiscretizedLogistic

    k = torch.tensor([0.0, 1.0, 17.0, 128.0, 254.0, 255.0], dtype=torch.float64)
    la, lb = torch.full_like(k, math.log(0.7)), torch.full_like(k, math.log(3.5))
    ref = betabinom.logpmf(k.numpy(), 255, 0.7, 3.5)
    assert np.allclose(BetaBinomial(la, lb).log_prob(k / 255).numpy(), ref, atol=1e-9)
    loc, log_s = torch.full_like(k, 0.4), torch.full_like(k, math.log(0.05))
    cdf = logistic.cdf(np.append((k.numpy() - 0.5) / 255, (k.numpy() + 0.5) / 255).reshape(2, -1), 0.4, 0.05)
    p = cdf[1] - cdf[0]
    p[0], p[-1] = cdf[1][0], 1 - cdf[0][-1]
    assert np.allclose(DiscretizedLogistic(loc, log_s).log_prob(k / 255).numpy(), np.log(p), atol=1e-9)


def test_no_code_length_for_data_the_likelihood_does_not_code():
    from vaekit.compression.rate import code_length

    soft = torch.rand(4, 1, 6, 5)  # grayscale under a bernoulli: soft targets, not a code length
    assert code_length(tiny_model("bernoulli"), soft, torch.ones(4))["kind"] == "none"
    assert code_length(tiny_model("beta-binomial"), soft, torch.ones(4))["kind"] == "none"


def test_activations_beyond_exact_arithmetic_are_refused():
    model = tiny_model("bernoulli")
    with torch.no_grad():
        model.encoder.net[0].weight.fill_(1e6)  # sums far beyond 2^20: float64 would round them
    with pytest.raises(CompressionError, match="exact arithmetic"):
        compress(model, data_for("bernoulli"))
