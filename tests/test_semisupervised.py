"""Semi-supervised learning (M2): the bound against its definition and against log p(x), partly labelled
data through loading and batching, training that beats the labelled examples alone, the commands and
the estimator."""

import math

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

import vaekit
from vaekit.classification import VAEClassifier, classify
from vaekit.cli import main
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import UNLABELLED, SourceSettings, keep_labels, load_data
from vaekit.data.base import Batch, Dataset
from vaekit.data.batches import TrainingBatches
from vaekit.errors import ConfigError, DataError
from vaekit.models import build_model
from vaekit.objectives import ELBO, Draws, SemiSupervisedBound
from vaekit.training import train

K = 3


def run_cli(*args, expect=0):
    """``vaekit`` in this process (the commands' own code; a subprocess proves nothing more); its exit code."""
    code = main([str(a) for a in args])
    assert code == expect, code
    return True


def small_m2(d=5, latent=2, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind="m2", input_shape=(d,), latent_dim=latent, hidden=(16,), context_dim=K)).double()
    return model.eval()


def test_unlabelled_bound_is_the_sum_over_classes_written_by_hand():
    model = small_m2()
    x = torch.rand(4, 5, dtype=torch.float64)
    noise = torch.randn(64, 1, 2, dtype=torch.float64)  # the same draws for every (example, class) pair
    terms = SemiSupervisedBound(alpha=0.0)(model, Batch(x, x), draws=Draws(noise=noise))
    q = model.classify(x).probs  # (B, K)
    bounds = torch.stack(
        [-ELBO(n_samples=64)(model, Batch(x, x, context=torch.full((4,), k)), draws=Draws(noise=noise)).neg_elbo for k in range(K)], 1
    )  # L(x, y) + log K for each class (B, K)
    by_hand = (q * (bounds - math.log(K))).sum(1) - (q * q.log()).sum(1)  # Σ_y q(y|x) L(x, y) + H(q)
    torch.testing.assert_close(-terms.neg_elbo, by_hand)
    torch.testing.assert_close(terms.loss, terms.neg_elbo)  # no label: no classification term
    assert (terms.extra["classification"] == 0).all() and (terms.extra["error"] == 0).all()


def log_px_by_quadrature(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log Σ_y p(y) ∫ p(z) p(x|y, z) dz (B,) of a model with a 1-d z, a Riemann sum on a fine grid."""
    z = torch.linspace(-8, 8, 4001, dtype=torch.float64)[:, None]  # (G, 1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 0])
    per_class = []
    for k in range(K):
        px = model.decode(z, torch.full((len(z),), k))  # batch (G,)
        log_joint = torch.stack([px.log_prob(row.expand(len(z), -1)) for row in x]) + log_pz  # (B, G)
        per_class.append(torch.logsumexp(log_joint, 1) + math.log(z[1, 0] - z[0, 0]) - math.log(K))
    return torch.logsumexp(torch.stack(per_class, 1), 1)


def test_the_bound_is_below_log_p_x_on_a_model_small_enough_to_integrate():
    """log p(x) = log Σ_y p(y) ∫ p(z) p(x|y, z) dz by quadrature over a 1-d z; the bound's Monte Carlo mean stays below it."""
    model = small_m2(d=3, latent=1, seed=1)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    log_px = log_px_by_quadrature(model, x)
    noise = torch.randn(20000, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bound = -SemiSupervisedBound(alpha=0.0)(model, Batch(x, x), draws=Draws(noise=noise)).neg_elbo
    assert (bound < log_px).all() and (log_px - bound < 20).all()


def test_labelled_terms_are_the_conditional_vaes_and_a_one_hot_classifier_makes_both_bounds_equal():
    model = small_m2()
    x = torch.rand(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    zeros = Draws(noise=torch.zeros(1, 1, 2, dtype=torch.float64))
    labelled = SemiSupervisedBound(alpha=0.5)(model, Batch(x, x, context=y), draws=zeros)
    cvae = ELBO()(model, Batch(x, x, context=y), draws=zeros)
    torch.testing.assert_close(labelled.neg_elbo, cvae.neg_elbo + math.log(K))  # −log p(y) = log K
    nll = -model.classify(x).logits.gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(labelled.loss, labelled.neg_elbo + 0.5 * nll)
    torch.testing.assert_close(labelled.extra["classification"], nll)
    with torch.no_grad():  # q(y|x) one-hot on each example's label
        model.classifier.logits.weight.zero_()
        model.classifier.logits.bias.copy_(torch.tensor([60.0, 0.0, 0.0]))
    first = y == 0
    unlabelled = SemiSupervisedBound()(model, Batch(x[first], x[first]), draws=zeros)
    again = SemiSupervisedBound()(model, Batch(x[first], x[first], context=y[first]), draws=zeros)
    torch.testing.assert_close(unlabelled.neg_elbo, again.neg_elbo)


def test_gradients_reach_the_classifier_from_unlabelled_examples_alone():
    model = small_m2().train()
    x = torch.rand(4, 5, dtype=torch.float64)
    SemiSupervisedBound()(model, Batch(x, x)).loss.sum().backward()
    assert model.classifier.logits.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("auxiliary", [0, 3])
def test_the_bound_under_bf16_autocast_is_float32_and_near_the_float32_bound(auxiliary):
    """--precision bf16: the classifier's logits come out of autocast in bfloat16, the bound's terms in float32."""
    torch.manual_seed(0)
    config = ModelConfig(kind="m2", input_shape=(5,), latent_dim=2, hidden=(16,), context_dim=K, auxiliary_dim=auxiliary)
    model = build_model(config).train()
    x = torch.rand(8, 5)
    batch = Batch(x, x, context=torch.tensor([0, -1, 2, -1, 1, -1, 2, -1]))  # half unlabelled
    noise = torch.zeros(1, 1, 2)  # the posterior means: the two precisions see the same z
    full = SemiSupervisedBound(alpha=0.1)(model, batch, draws=Draws(noise=noise))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)  # the auxiliary variable's draw
        half = SemiSupervisedBound(alpha=0.1)(model, batch, draws=Draws(noise=noise))
    assert half.loss.dtype == torch.float32 and bool(torch.isfinite(half.loss).all())
    if not auxiliary:  # with a, the bf16 pass draws its own a
        torch.testing.assert_close(half.neg_elbo, full.neg_elbo, rtol=0.05, atol=0.05)
    half.loss.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_class_balance_adds_the_kl_of_the_unlabelled_examples_mean_class_probabilities_and_pulls_it_to_the_prior():
    model = small_m2()
    x = torch.rand(6, 5, dtype=torch.float64)
    y = torch.tensor([0, -1, -1, 2, -1, -1])
    zeros = Draws(noise=torch.zeros(1, 1, 2, dtype=torch.float64))
    with torch.no_grad():  # a classifier that favours class 0 for every example
        model.classifier.logits.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    plain = SemiSupervisedBound(alpha=0.5)(model, Batch(x, x, context=y), draws=zeros)
    balanced = SemiSupervisedBound(alpha=0.5, balance=2.0)(model, Batch(x, x, context=y), draws=zeros)
    mean = model.classify(x[y < 0]).probs.mean(0)  # q̄(y) over the four unlabelled examples (K,)
    by_hand = (mean * (mean / (1 / K)).log()).sum()  # KL(q̄ ‖ uniform p(y))
    assert by_hand > 0.05
    torch.testing.assert_close(balanced.loss.mean() - plain.loss.mean(), 2.0 * by_hand)
    torch.testing.assert_close(balanced.loss[y >= 0], plain.loss[y >= 0])  # the labelled rows carry none of it
    torch.testing.assert_close(balanced.neg_elbo, plain.neg_elbo)  # the bound it reports is the bound
    (balanced.loss.mean() - plain.loss.mean()).backward()
    pull = model.classifier.logits.bias.grad
    assert pull[0] > 0 and (pull[1:] < 0).all()  # gradient descent lowers the favoured class, raises the others
    labelled = Batch(x, x, context=torch.tensor([0, 1, 2, 0, 1, 2]))
    torch.testing.assert_close(  # a batch without unlabelled examples: no term
        SemiSupervisedBound(balance=2.0)(model, labelled, draws=zeros).loss, SemiSupervisedBound()(model, labelled, draws=zeros).loss
    )


def test_class_balance_comes_from_the_settings_and_only_with_m2(tmp_path, capsys):
    config = RunConfig(model=ModelConfig(kind="m2"), train=TrainConfig(class_balance=1.5))
    assert SemiSupervisedBound.from_config(config).balance == 1.5
    with pytest.raises(ConfigError, match="class balance must be >= 0"):
        train(RunConfig(model=ModelConfig(kind="m2"), train=TrainConfig(class_balance=-1.0)), None)
    run_cli("train", "--class-balance", "1", "--epochs", "1", "--out", tmp_path / "vae", expect=2)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--class-balance has no effect without --model m2" in err


def test_partial_labels_load_from_arrays_and_csv_and_keep_labels_is_class_balanced(tmp_path):
    x = np.random.default_rng(0).random((60, 4)).astype(np.float32)
    y = np.tile(np.arange(3), 20)
    y[::4] = -1
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    splits = load_data(str(tmp_path / "rows.npz"), settings=SourceSettings(valid_fraction=0.2))
    assert splits.info["num_classes"] == 3
    assert (splits.train.y == UNLABELLED).any() and splits.train.partly_labelled
    header = "a,b,c,d,label\n" + "".join(",".join(map(str, [*row, label])) + "\n" for row, label in zip(x, y))
    (tmp_path / "rows.csv").write_text(header)
    table = load_data(str(tmp_path / "rows.csv"))
    assert table.info["num_classes"] == 3 and int((torch.cat([table.train.y, table.valid.y]) == -1).sum()) == 15
    full = Dataset(torch.zeros(30, 2), torch.arange(30) % 3)
    kept = keep_labels(full, 7, 3, seed=4)
    assert torch.equal(torch.bincount(kept.y[kept.y >= 0]), torch.tensor([3, 2, 2]))
    assert torch.equal(kept.y, keep_labels(full, 7, 3, seed=4).y) and not torch.equal(kept.y, keep_labels(full, 7, 3, seed=5).y)
    bad = y.copy()
    bad[0] = -2
    np.savez(tmp_path / "bad.npz", x=x, y=bad)
    with pytest.raises(DataError, match="-1 for an unlabelled"):
        load_data(str(tmp_path / "bad.npz"))


def test_batches_of_partly_labelled_data_are_half_labelled_and_cover_the_unlabelled_once(tmp_path):
    y = torch.full((100,), -1)
    y[:6] = torch.tensor([0, 1, 2, 0, 1, 2])
    x = torch.arange(100.0)[:, None]
    common = dict(context=y, global_batch=20, seed=2, device=torch.device("cpu"))
    batches = TrainingBatches(x, **common)
    seen = []
    for _, b in batches.epoch(0):
        assert int(b.labelled.sum()) == 10 and torch.equal(b.labelled, b.context >= 0)
        seen.append(b.inputs[~b.labelled, 0])
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(6.0, 100.0))  # each unlabelled example once
    assert len(batches) == 94 + batches.steps_per_epoch * 10
    shares = [[b for _, b in TrainingBatches(x, rank=r, world=2, **common).epoch(0)] for r in (0, 1)]
    for one, (a, b) in zip(batches.epoch(0), zip(*shares)):  # the two processes' shares make up the one-process batch
        assert torch.equal(torch.cat([a.inputs, b.inputs]), one[1].inputs) and torch.equal(
            torch.cat([a.labelled, b.labelled]), one[1].labelled
        )
    from vaekit.data.streaming import side_path

    np.save(side_path(tmp_path / "m.npy"), y.numpy())
    np.save(tmp_path / "m.npy", x.numpy())
    mapped = load_data(str(tmp_path / "m.npy"), settings=SourceSettings(memmap=True, valid_fraction=0.1))
    assert mapped.streaming and mapped.train.partly_labelled
    streamed = TrainingBatches(mapped.train.x, context=mapped.train.y, global_batch=20, seed=2, device=torch.device("cpu"))
    for _, b in streamed.epoch(0):
        assert torch.equal(b.labelled, y[b.inputs[:, 0].long()] >= 0)  # each row's label travelled with it


def test_uncertain_examples_are_drawn_afresh_in_every_batch_around_their_means():
    from vaekit.data.base import Dataset
    from vaekit.data.batches import data_order

    g = torch.Generator().manual_seed(0)
    n = 500
    x, spread = torch.randn(n, 3, generator=g) * 10, torch.rand(n, 3, generator=g) + 0.5  # spreads 0.5 .. 1.5
    batches = TrainingBatches(x, spread=spread, global_batch=n, seed=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    residuals = []
    for epoch in range(40):
        ((_, batch),) = batches.epoch(epoch)
        order = data_order(n, 0, epoch)
        assert torch.equal(batch.inputs, batch.target)  # the draw is the example: the encoder and the likelihood see it
        residuals.append((batch.inputs - x[order]) / spread[order])
    z = torch.stack(residuals)  # (40, n, 3): standard normal when each row is drawn with its own spread
    assert abs(float(z.mean())) < 0.02 and abs(float(z.var()) - 1) < 0.03  # 5 standard errors (60,000 draws)
    assert float((z[0] - z[1]).abs().min()) > 0  # every pass draws anew
    assert torch.equal(Dataset(x, spread=spread).batch("cpu").inputs, x)  # evaluation reads the means
    assert torch.equal(Dataset(x, spread=spread).subset(torch.tensor([3, 1])).spread, spread[[3, 1]])


def digits_config(**train):
    return RunConfig(
        data=DataConfig(source="digits", labelled=100),
        model=ModelConfig(kind="m2", latent_dim=8, hidden=(256,)),
        train=TrainConfig(epochs=20, batch_size=100, threads=1, **train),
    )


def test_m2_with_ten_labels_per_class_beats_its_classifier_trained_on_those_labels_alone():
    run = train(digits_config(), None, progress=False)
    assert run.config.train.objective == "m2" and run.config.model.condition == "label"
    assert run.config.train.alpha == pytest.approx(0.1 * 1347 / 100)
    data = load_data("digits")
    m2_error = classify(run.model, data.test).error
    kept = keep_labels(data.train, 100, 10, 0)
    known = kept.y >= 0
    torch.manual_seed(0)
    alone = build_model(run.config.model).classifier  # the same network, trained on the 100 labelled examples alone
    optimizer = torch.optim.Adam(alone.parameters(), lr=1e-3)
    best = 1.0
    for _ in range(300):
        optimizer.zero_grad()
        (-alone(kept.x[known]).log_prob(kept.y[known]).mean()).backward()
        optimizer.step()
        with torch.no_grad():
            best = min(best, float((alone(data.test.x).logits.argmax(-1) != data.test.y).double().mean()))  # its best test error, even
    assert m2_error < best, (m2_error, best)  # measured: 9.3% against 11.9% (12.6% after the 300 steps)


def test_m2_refuses_what_it_cannot_learn_from():
    with pytest.raises(ConfigError, match="needs class labels"):
        train(RunConfig(data=DataConfig(source="digits"), model=ModelConfig(kind="m2")), None, data=_unlabelled_digits())
    with pytest.raises(DataError, match="more than the 1347 labelled"):
        train(RunConfig(data=DataConfig(labelled=5000), model=ModelConfig(kind="m2")), None)
    with pytest.raises(ConfigError, match="own objective"):
        train(RunConfig(model=ModelConfig(kind="m2"), train=TrainConfig(objective="iw", n_samples=2)), None)
    with pytest.raises(ConfigError, match="standard normal prior"):
        build_model(ModelConfig(kind="m2", prior="vampprior", context_dim=3))
    missing = load_data("digits")
    missing.train.y[missing.train.y == 4] = -1  # class 4 has no labelled example
    with pytest.raises(ConfigError, match="class 4"):
        train(RunConfig(model=ModelConfig(kind="m2"), train=TrainConfig(epochs=1)), None, data=missing)


def test_the_classifier_takes_its_own_hidden_sizes_and_only_in_m2(tmp_path, capsys):
    def widths(network):
        return [m.out_features for m in network.modules() if isinstance(m, torch.nn.Linear)]

    config = ModelConfig(kind="m2", input_shape=(5,), latent_dim=2, hidden=(16,), context_dim=K)
    assert widths(build_model(config).classifier) == [16, K]  # by default, the encoder's sizes
    deeper = build_model(ModelConfig(**{**vars(config), "classifier_hidden": (24, 12)}))
    assert widths(deeper.classifier) == [24, 12, K] and widths(deeper.encoder)[0] == 16
    run_cli("train", "--model", "m2", "--classifier-hidden", "8", "8", "--hidden", "4", "--latent-dim", "2", "--epochs", "1",
            "--labelled", "100", "--out", tmp_path / "m2")  # fmt: skip
    assert widths(vaekit.load(tmp_path / "m2").model.classifier) == [8, 8, 10]
    capsys.readouterr()
    run_cli("train", "--classifier-hidden", "8", "--epochs", "1", "--out", tmp_path / "vae", expect=2)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--classifier-hidden has no effect without --model m2" in err
    with pytest.raises(ConfigError, match="classifier hidden sizes must be positive"):
        train(RunConfig(model=ModelConfig(kind="m2", classifier_hidden=(0,))), None)


def test_the_classifier_takes_its_own_dropout_and_only_in_m2(tmp_path, capsys):
    def rates(network):
        return [m.p for m in network.modules() if isinstance(m, torch.nn.Dropout)]

    config = ModelConfig(kind="m2", input_shape=(5,), latent_dim=2, hidden=(16, 8), context_dim=K, dropout=(0.2, 0.0))
    model = build_model(config)
    assert rates(model.classifier) == [0.2, 0.2] == rates(model.encoder)  # by default, the encoder's dropout
    own = build_model(ModelConfig(**{**vars(config), "classifier_dropout": 0.5}))
    assert rates(own.classifier) == [0.5, 0.5] and rates(own.encoder) == [0.2, 0.2]
    alone = build_model(ModelConfig(**{**vars(config), "dropout": (0.0, 0.0), "classifier_dropout": 0.5}))
    assert rates(alone.classifier) == [0.5, 0.5] and rates(alone.encoder) == [] and rates(alone.decoder) == []
    x = torch.rand(64, 5)
    alone.train()
    assert not torch.equal(alone.classifier(x).probs, alone.classifier(x).probs)  # dropped units in training
    alone.eval()
    assert torch.equal(alone.classifier(x).probs, alone.classifier(x).probs)  # none in evaluation
    run_cli("train", "--model", "m2", "--classifier-dropout", "0.3", "--hidden", "4", "--latent-dim", "2", "--epochs", "1",
            "--labelled", "100", "--out", tmp_path / "m2")  # fmt: skip
    assert rates(vaekit.load(tmp_path / "m2").model.classifier) == [0.3]
    capsys.readouterr()
    run_cli("train", "--classifier-dropout", "0.3", "--epochs", "1", "--out", tmp_path / "vae", expect=2)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--classifier-dropout has no effect without --model m2" in err
    wrong = ((1.0, "mlp", "classifier dropout must be a probability"), (0.5, "conv", "--classifier-dropout is for the dense"))
    for p, arch, message in wrong:
        with pytest.raises(ConfigError, match=message):
            train(RunConfig(model=ModelConfig(kind="m2", arch=arch, classifier_dropout=p)), None)


def _unlabelled_digits():
    data = load_data("digits")
    for part in (data.train, data.valid, data.test):
        part.y = None
    data.info["num_classes"] = None
    return data


def test_classify_analogies_evaluate_and_bad_input_commands(tmp_path, capsys):
    out = tmp_path / "m2"
    run_cli("train", "--model", "m2", "--labelled", "50", "--epochs", "2", "--latent-dim", "4", "--hidden", "64", "--out", str(out))
    assert "validation error" in capsys.readouterr().out
    run_cli("classify", str(out))
    printed = capsys.readouterr().out
    assert "accuracy" in printed and (out / "figures" / "confusion-test.png").exists()
    lines = (out / "predictions-test.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["index", "predicted", "label"] and len(lines) == 271
    probabilities = np.array([[float(v) for v in line.split(",")[3:]] for line in lines[1:]])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    run_cli("analogies", str(out), "-n", "4")
    from PIL import Image

    picture = np.asarray(Image.open(out / "figures" / "analogies.png").convert("L"))
    assert picture.shape[1] > picture.shape[0] and picture.std() > 30  # 4 rows of 11 images, not blank
    run_cli("evaluate", str(out), "--no-pca")
    printed = capsys.readouterr().out
    assert "test error" in printed and "labels summed out" in printed
    plain = tmp_path / "vae"
    run_cli("train", "--epochs", "1", "--out", str(plain))
    assert run_cli("classify", str(plain), expect=2) and "no classifier" in capsys.readouterr().err
    assert run_cli("train", "--model", "m2", "--labelled", "5", "--out", str(tmp_path / "x"), expect=2)
    assert "give at least 10" in capsys.readouterr().err


SMALL = dict(latent_dim=2, hidden=(16,), epochs=25, batch_size=32, lr=1e-2)


# scikit-learn's semi-supervised convention: -1 marks an unlabelled row, so labels {-1, 1} are one class and the
# unlabelled rows (this check's binary case), not two classes; the check expects -1 to be a class.
MINUS_ONE_IS_UNLABELLED = {"check_classifiers_classes": "-1 marks an unlabelled row (scikit-learn's semi-supervised convention)"}


@parametrize_with_checks([VAEClassifier(**SMALL)], expected_failed_checks=lambda estimator: MINUS_ONE_IS_UNLABELLED, xfail_strict=True)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_estimator_learns_from_partly_labelled_rows_and_keeps_the_callers_labels():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 4
    y = np.repeat(np.array([10, 20, 30]), 100)
    X = centres[np.repeat(np.arange(3), 100)] + rng.normal(size=(300, 6))
    partial = y.copy()
    partial[rng.permutation(300)[:270]] = -1
    clf = VAEClassifier(epochs=15, random_state=0).fit(X, partial)
    assert list(clf.classes_) == [10, 20, 30]
    assert clf.score(X, y) > 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(1), 1)
    deeper = VAEClassifier(epochs=1, classifier_hidden=(32, 16), random_state=0).fit(X, partial)
    linear = [m.out_features for m in deeper.model_.classifier.modules() if isinstance(m, torch.nn.Linear)]
    assert linear == [32, 16, 3]
    dropped = VAEClassifier(epochs=1, classifier_dropout=0.5, random_state=0).fit(X, partial)
    assert [m.p for m in dropped.model_.classifier.modules() if isinstance(m, torch.nn.Dropout)] == [0.5]
    plain = VAEClassifier(epochs=1, random_state=0).fit(X, partial).predict_proba(X)
    balanced = VAEClassifier(epochs=1, class_balance=5.0, random_state=0).fit(X, partial).predict_proba(X)
    assert np.abs(balanced - plain).max() > 1e-3  # the term reaches training


def test_m1_plus_m2_trains_on_a_vaes_codes_and_reads_every_split_through_it(tmp_path, capsys):
    m1, m12 = tmp_path / "m1", tmp_path / "m12"
    run_cli("train", "--latent-dim", "6", "--epochs", "10", "--out", m1)
    run_cli(
        "train", "--model", "m2", "--on-codes", m1, "--labelled", "30", "--likelihood", "gaussian-learned",
        "--latent-dim", "3", "--hidden", "32", "--epochs", "2", "--out", m12,
    )  # fmt: skip
    run = vaekit_load(m12)
    units = run.data_info["codes"]["units"]  # the M1 run's active units, standardised
    assert run.config.data.codes_of == str(m1.resolve()) and run.model.input_shape == (len(units),) and 0 < len(units) <= 6
    assert run.data_info["codes_of"] == str(m1.resolve()) and run.data_info["labelled"] == 30
    test = run.load_data().test
    assert test.x.shape == (270, len(units)) and test.y is not None
    train = run.load_data().train
    torch.testing.assert_close(train.x.mean(0), torch.zeros(len(units)), atol=1e-4, rtol=0)
    from vaekit.codes import posterior_moments

    m1_run = vaekit_load(m1)
    _, stds = posterior_moments(m1_run.model, m1_run.load_data().train)  # q(z|x)'s deviations, on the codes' scale
    torch.testing.assert_close(train.spread, stds[:, units] / torch.tensor(run.data_info["codes"]["std"]), atol=1e-5, rtol=1e-4)
    assert run.data_info["codes"]["draw"] and (train.spread > 0).all()
    run_cli("classify", m12, "--data", "digits")
    assert "accuracy" in capsys.readouterr().out
    assert run_cli("train", "--model", "m2", "--on-codes", m12, "--epochs", "1", "--out", tmp_path / "x", expect=2)
    assert "unconditional one-layer VAE" in capsys.readouterr().err


def vaekit_load(path):
    from vaekit.runs import load

    return load(path)


def test_two_processes_train_m2_on_partly_labelled_data_as_one_does_within_noise(tmp_path):
    import csv
    import os
    import subprocess
    import sys

    common = ["--model", "m2", "--labelled", "100", "--latent-dim", "4", "--hidden", "64", "--epochs", "3", "--threads", "1"]
    rows = {}
    for name, extra in (("one", ["--batch-size", "100"]), ("two", ["--batch-size", "50", "--nproc", "2"])):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "vaekit", "train", *common, *extra, "--out", str(tmp_path / name)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        with (tmp_path / name / "metrics.csv").open() as f:
            rows[name] = list(csv.DictReader(f))
    one, two = rows["one"][-1], rows["two"][-1]
    assert one["step"] == two["step"]  # the same global batches, the labelled half included
    assert float(two["valid_neg_elbo"]) == pytest.approx(float(one["valid_neg_elbo"]), rel=0.05)
    assert abs(float(two["valid_error"]) - float(one["valid_error"])) < 0.08


@pytest.mark.parametrize("arch", ["mlp", "gated", "conv"])
def test_encoding_pairs_reads_each_example_once_and_equals_encoding_the_repeated_rows(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="m2", arch=arch, input_shape=(1, 8, 8), latent_dim=3, hidden=(16, 8), context_dim=K)).double()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    rows = torch.tensor([0, 1, 1, 1, 2, 3, 3])
    classes = torch.tensor([2, 0, 1, 2, 1, 0, 2])
    pairs, repeated = model.encode_pairs(x, rows, classes), model.encode(x[rows], classes)
    torch.testing.assert_close(pairs.mean, repeated.mean)
    torch.testing.assert_close(pairs.stddev, repeated.stddev)


# The auxiliary variable (Maaløe et al. 2016's ADGM): q(a|x) and p(a|x, y, z), the classifier and the encoder reading a.


def small_adgm(d=5, latent=2, auxiliary=3, seed=0):
    torch.manual_seed(seed)
    config = ModelConfig(kind="m2", input_shape=(d,), latent_dim=latent, hidden=(16,), context_dim=K, auxiliary_dim=auxiliary)
    return build_model(config).double().eval()


def test_auxiliary_bound_is_the_sum_over_classes_of_its_terms_written_by_hand():
    model = small_adgm()
    x = torch.rand(4, 5, dtype=torch.float64)
    zeros = Draws(noise=torch.zeros(1, 1, 2, dtype=torch.float64))  # z at q(z|a, x, y)'s mean; a one draw
    torch.manual_seed(7)
    terms = SemiSupervisedBound(alpha=0.0)(model, Batch(x, x), draws=zeros)
    torch.manual_seed(7)
    qa = model.encode_auxiliary(x)
    a = qa.rsample()  # (B, A): the objective's draw
    q = model.classify(x, a).probs  # q(y|a, x) (B, K)
    bounds = []
    for k in range(K):
        y = torch.full((4,), k)
        qz = model.encode(x, y, a)
        z = qz.mean
        one_hot = torch.nn.functional.one_hot(y, K).double()
        pa = model.auxiliary.prior(model.auxiliary.prior_network(torch.cat([x, one_hot, z], 1)))  # p(a|x, y, z)
        kl_z = torch.distributions.kl_divergence(qz, model.prior())
        bounds.append(model.decode(z, y).log_prob(x) - kl_z - math.log(K) + pa.log_prob(a) - qa.log_prob(a))
    by_hand = (q * torch.stack(bounds, 1)).sum(1) - (q * q.log()).sum(1)  # Σ_y q(y|a, x) L(x, y, a) + H(q(y|a, x))
    torch.testing.assert_close(-terms.neg_elbo, by_hand)
    labelled = SemiSupervisedBound(alpha=0.0)(model, Batch(x, x, context=torch.full((4,), 1)), draws=zeros)
    assert not torch.allclose(labelled.neg_elbo, -bounds[1])  # a fresh draw of a: the labelled bound at another a
    torch.manual_seed(7)
    again = SemiSupervisedBound(alpha=0.0)(model, Batch(x, x, context=torch.full((4,), 1)), draws=zeros)
    torch.testing.assert_close(again.neg_elbo, -bounds[1])  # L(x, y, a) itself at the same draw


def test_auxiliary_bound_is_below_log_p_x_and_a_changes_neither_p_x_nor_the_decoder():
    """p(a|x, y, z) integrates to one, so log p(x) is M2's: quadrature over a 1-d z; the bound's mean over
    draws of a and z stays below it."""
    model = small_adgm(d=3, latent=1, seed=1)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    log_px = log_px_by_quadrature(model, x)
    repeats = x.repeat_interleave(4000, 0)  # a drawn 4000 times per example
    noise = torch.randn(16, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.manual_seed(0)
    terms = SemiSupervisedBound(alpha=0.0)(model, Batch(repeats, repeats), draws=Draws(noise=noise))
    bound = -terms.neg_elbo.view(2, -1).mean(1)
    stderr = terms.neg_elbo.view(2, -1).std(1) / math.sqrt(4000)
    assert (bound + 3 * stderr < log_px).all() and (log_px - bound < 20).all()


def test_auxiliary_variable_reaches_training_and_only_an_m2_model_on_flat_inputs_has_one(tmp_path, capsys):
    model = small_adgm().train()
    x = torch.rand(4, 5, dtype=torch.float64)
    SemiSupervisedBound()(model, Batch(x, x, context=torch.tensor([0, -1, 2, -1]))).loss.sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in model.auxiliary.parameters())  # q(a|x) and p(a|x, y, z) both learn
    model.eval()
    with torch.no_grad():  # the views read E_q[a|x]: deterministic
        torch.testing.assert_close(model.classify(x).probs, model.classify(x, model.encode_auxiliary(x).mean).probs)
        y, mean = torch.zeros(4, dtype=torch.long), model.encode_auxiliary(x).mean
        torch.testing.assert_close(model.encode(x, y).mean, model.encode(x, y, mean).mean)
        assert not torch.allclose(model.encode(x, y).mean, model.encode(x, y, mean + 1).mean)  # the encoder reads a
    with pytest.raises(ConfigError, match="flat network"):
        build_model(ModelConfig(kind="m2", input_shape=(1, 8, 8), arch="conv", hidden=(4,), context_dim=K, auxiliary_dim=3))
    assert run_cli("train", "--auxiliary-dim", "4", "--out", tmp_path / "vae", expect=2)
    assert "--model m2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no auxiliary variable"):
        small_m2().encode_auxiliary(x)


def test_adgm_trains_saves_and_every_command_reads_its_auxiliary_variable(tmp_path, capsys):
    out = tmp_path / "adgm"
    run_cli("train", "--model", "m2", "--auxiliary-dim", "8", "--labelled", "50", "--epochs", "2", "--latent-dim", "4", "--hidden", "64",
            "--out", out)  # fmt: skip
    run = vaekit.load(out)
    assert run.model.auxiliary is not None and run.model.auxiliary.size == 8
    run_cli("classify", out)
    assert "accuracy" in capsys.readouterr().out
    run_cli("evaluate", out, "--no-pca")
    printed = capsys.readouterr().out
    assert "test error" in printed and "labels summed out" in printed
    run_cli("analogies", out, "-n", "3")
    clf = VAEClassifier(epochs=1, auxiliary_dim=4, random_state=0).fit(
        np.random.default_rng(0).normal(size=(60, 5)), np.tile([0, 1, -1], 20)
    )
    assert clf.model_.auxiliary.size == 4 and clf.predict_proba(np.zeros((2, 5))).shape == (2, 2)
