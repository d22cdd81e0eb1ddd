"""``vaekit evaluate``: negative ELBO, reconstruction and KL of a split, in nats; optionally the
importance-weighted log-likelihood; latent diagnostics (KL per unit, active units) with a warning
on posterior collapse; and the PCA baseline's reconstruction error beside the model's.

bits/dim is shown only where it is a code length (``vaekit.compression.rate.code_kind`` decides, for
the negative ELBO and the IW estimate alike); elsewhere the JSON keeps the ``bits_per_dim`` keys
(top level and ``iw``) with the value null, and ``code_length.note`` says why."""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

from vaekit.baselines import compare_reconstruction
from vaekit.checkpoint import atomic_write_json
from vaekit.cli.common import (
    add_data_dir_argument,
    add_run_argument,
    is_path,
    load_run,
    positive_int,
    read_examples,
    read_split,
    resolve_device,
)
from vaekit.data.base import COLUMNS, LABELS, Dataset
from vaekit.data.sequences import vocabulary_of
from vaekit.errors import ConfigError, DataError, VaekitError
from vaekit.evaluation import collapse_message, elbo_terms, iw_log_likelihood, latent_diagnostics, summarize, summarize_log_likelihood
from vaekit.examples import for_model
from vaekit.objectives import ELBO

log = logging.getLogger(__name__)

EXACT_MATCH_EXAMPLES = 1000  # sequences whose greedy reconstructions ``vaekit evaluate`` compares


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test-set negative ELBO, IW log-likelihood, latent diagnostics, PCA baseline",
        description="Evaluate a trained run: negative ELBO = reconstruction + KL, in nats per example and per dimension; "
        "with --iw-samples K the importance-weighted estimate of -log p(x) (Burda et al. 2015); "
        "KL per latent unit and active units; PCA's squared reconstruction error beside the model's.",
    )
    add_run_argument(p)
    p.add_argument(
        "--data", metavar="SOURCE", help="dataset name or path (default: the run's dataset), preprocessed like the training data"
    )
    add_data_dir_argument(p)
    p.add_argument(
        "--split",
        choices=["test", "valid", "train", "all"],
        help="which examples: test, valid, train, or all (every example of a file, in file order; a named dataset's test split); "
        "default: all for a --data path, else test (the validation split of a run's data that has no test split)",
    )
    p.add_argument("--samples", type=positive_int, default=1, help="latent samples per example for the ELBO (default 1)")
    p.add_argument(
        "--iw-samples",
        type=positive_int,
        metavar="K",
        help="also estimate -log p(x) with K importance samples per example (papers use 5000)",
    )
    p.add_argument(
        "--iw-rows",
        type=positive_int,
        metavar="ROWS",
        help="decoder rows (samples x examples) per chunk of the IW estimate; bounds memory "
        "(default 2048 on a CPU, where chunks that fit the cache run fastest, 32768 on a GPU)",
    )
    p.add_argument("--no-pca", action="store_true", help="skip the PCA baseline (fitted on the training split)")
    p.add_argument("--batch-size", type=positive_int, default=1000, help="examples per batch (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent samples (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto: a GPU where there is one (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar for the IW estimate")
    p.add_argument("--json", metavar="PATH", help="write the results here (default RUN/eval-SPLIT.json)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    started = time.perf_counter()
    r = load_run(args, map_location=resolve_device(args.device))
    if args.iw_samples and r.model.latent.deterministic:
        raise ConfigError("--iw-samples needs a VAE: a plain autoencoder has no likelihood to estimate")
    data, split, split_name = _examples(r, args)
    examples = for_model(r.model, split, f"the {split_name} split")  # a conditional model's: each with its label or context, log p(x|y)
    dims = math.prod(r.model.input_shape)
    terms = elbo_terms(r.model, examples, objective=ELBO(n_samples=args.samples), batch_size=args.batch_size, seed=args.seed)
    result = {"run": str(r.path), "checkpoint": r.weights, "data": args.data or r.config.data.source, "split": split_name}
    result.update(summarize(terms, dims))
    from vaekit.compression.rate import code_length  # scipy and constriction: 0.3 s that every other command's start-up skips

    result["code_length"] = code = code_length(r.model, split.x, terms.neg_elbo, batch_size=args.batch_size, seed=args.seed)
    coded = code["kind"] == "bits-back"  # code_kind's decision: the negative ELBO (and -log p(x)) in bits is a code length
    if not coded:
        result["bits_per_dim"] = None
    per_dim = f"{result['bits_per_dim']:.4f} bits/dim" if coded else "not a code length: see below"
    what = {LABELS: "label", COLUMNS: "context"}.get(examples.conditioned_on)  # what a conditional model is given
    given = "" if what is None else f", each given its {what} (a conditional model)"
    print(f"{result['split']} split, {result['examples']} examples ({result['data']}){given}:")
    print(f"  negative ELBO   {result['neg_elbo']:10.3f} ± {result['neg_elbo_stderr']:.3f} nats  ({per_dim})")
    print(f"  reconstruction  {result['reconstruction']:10.3f} nats")
    print(f"  KL              {result['kl']:10.3f} nats")
    if code["bits_per_dim"] is not None:
        print(f"  code length     {code['bits_per_dim']:10.4f} bits/dim ({code['kind']}: {code['note']})")
    else:
        print(f"  code length            n/a ({code['note']})")

    if args.iw_samples:
        result["iw"] = _iw(r, examples, args, dims)
        iw = result["iw"]
        if not coded:
            iw["bits_per_dim"] = None
        iw_dim = f"{iw['bits_per_dim']:.4f} bits/dim" if coded else "not a code length"
        print(
            f"  IW-NLL (K={iw['k']})  {iw['nll']:8.3f} ± {iw['nll_stderr']:.3f} nats  ({iw_dim}; "
            f"{result['neg_elbo'] - iw['nll']:.3f} below the negative ELBO; {iw['seconds']:.1f} s)"
        )

    if r.model.classifier is not None:
        result["semi_supervised"] = _semi_supervised(r, split, split_name, args)
    _by_data_kind(r, data, split, examples, args, result)

    diag = latent_diagnostics(r.model, examples, batch_size=args.batch_size)
    result["latent"] = diag.to_dict()
    if not r.model.latent.deterministic:
        print(f"  active units    {diag.n_active:6d} of {len(diag.activity)} (Cov_x E_q[z_u] > {diag.threshold:g})")
        for i, layer in enumerate(diag.layers or []):
            print(f"  layer z{i + 1:<2d}       {layer.n_active:6d} of {len(layer.activity)} active, KL {layer.kl:.3f} nats")
        if diag.kl_per_dim is not None:
            print("  KL per unit     " + " ".join(f"{v:.2f}" for v in diag.kl_per_dim.tolist()))
        warning = collapse_message(diag)
        result["warning"] = warning
        if warning:
            log.warning("warning: %s", warning)

    result["seconds"] = time.perf_counter() - started
    out = Path(args.json) if args.json else r.path / f"eval-{split_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(f"written to {out}")
    return 0


def _by_data_kind(r, data, split: Dataset, examples: Dataset, args, result: dict) -> None:
    """A sequence model's figures per token and exact matches (``sequences``); PCA's error beside the model's
    (``pca``) for the others, unless ``--no-pca``."""
    if vocabulary_of(r.data_info) is not None:
        result["sequences"] = _sequences(r, split, result)
    elif not args.no_pca:
        result["pca"] = _pca(r, data, examples, args)


def _pca(r, data, examples: Dataset, args) -> dict:
    """PCA's squared reconstruction error beside the model's (fitted on the training split), printed and returned."""
    train_x = (data or _run_training_data(r)).train.x
    pca = compare_reconstruction(r.model, train_x, examples, batch_size=args.batch_size)
    print(
        f"  squared reconstruction error per example: model {pca['model_squared_error']:.4g}, "
        f"PCA with {pca['components']} components {pca['pca_squared_error']:.4g} (ratio {pca['ratio']:.3f})"
    )
    return pca


def _sequences(r, split: Dataset, result: dict) -> dict:
    """Per token (the stored tokens a sequence's likelihood scores: its tokens and ``<end>``) and the exact-match
    rate of greedy reconstructions at the posterior mean (of the first ``EXACT_MATCH_EXAMPLES``), printed and returned."""
    from vaekit.strings import StringCodec, reconstruct_strings

    x = split.x[:]
    tokens = float((x[:, 1:] != 0).sum()) / len(x)  # scored tokens per sequence
    out = {"tokens_per_sequence": tokens, "neg_elbo_per_token": result["neg_elbo"] / tokens}
    print(f"  per token       {out['neg_elbo_per_token']:10.4f} nats ({tokens:.1f} tokens a sequence, <end> included)")
    if "iw" in result:
        out["iw_nll_per_token"] = result["iw"]["nll"] / tokens
        print(f"  IW-NLL per token {out['iw_nll_per_token']:9.4f} nats")
    shown = x[:EXACT_MATCH_EXAMPLES]
    rec = reconstruct_strings(r.model, StringCodec.of_run(r), shown)
    out.update(exact_match=rec.exact_match, exact_match_examples=len(shown))
    print(f"  exact match     {rec.exact_match:10.4f} (greedy decoding at the posterior mean, {len(shown)} sequences)")
    return out


def _iw(r, examples: Dataset, args, dims: int) -> dict:

    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(examples), desc=f"IW estimate, K={args.iw_samples}", unit="ex", leave=False, disable=None, mininterval=1.0)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        if bar is not None:
            bar.update(n - done)
        done = n

    start = time.perf_counter()
    try:
        log_px = iw_log_likelihood(r.model, examples, k=args.iw_samples, max_rows=args.iw_rows, seed=args.seed, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    return {"k": args.iw_samples, **summarize_log_likelihood(log_px, dims), "seconds": time.perf_counter() - start, "seed": args.seed}


def _examples(r, args: argparse.Namespace):
    """(the data loaded, or None for --split all; the split to evaluate; its name): every example of a
    --data path by default, else the test split (the validation split of the run's data without one)."""
    split_name = args.split or ("all" if args.data and is_path(args.data) else None)
    if split_name == "all":
        split, _, _ = read_examples(r, args.data, split_name)
        return None, split, split_name  # the PCA baseline is then fitted on the run's own training split
    return read_split(r, args.data, split_name)


def _semi_supervised(r, split, split_name: str, args: argparse.Namespace) -> dict:
    """A semi-supervised run's classifier error on the split's labelled examples, and its bound on −log p(x)
    with the labels summed out (the unlabelled bound U(x) of ``SemiSupervisedBound``)."""
    from vaekit.classification import classify
    from vaekit.objectives import SemiSupervisedBound

    result = classify(r.model, split, batch_size=args.batch_size)
    unlabelled = for_model(r.model, Dataset(split.x), f"the {split_name} split", keep_unlabelled=True)  # every label -1: summed out
    terms = elbo_terms(r.model, unlabelled, objective=SemiSupervisedBound(alpha=0.0), batch_size=args.batch_size, seed=args.seed)
    marginal = float(terms.neg_elbo.double().mean())
    out = {"error": result.error, "labelled": 0 if result.known is None else int(result.known.sum()), "neg_marginal_bound": marginal}
    if result.error is not None:
        print(f"  {split_name} error      {100 * result.error:9.2f}%  (q(y|x) on {out['labelled']} labelled examples)")
    print(f"  -log p(x) bound {marginal:10.3f} nats (labels summed out; the figures above are given each label)")
    return out


def _run_training_data(r):

    try:
        return r.load_data()
    except VaekitError as exc:
        raise DataError(f"cannot load the run's training data for the PCA baseline ({exc.cli or exc}); give --no-pca") from None
