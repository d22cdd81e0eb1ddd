"""Every command on a sequence model, end to end on small data: a small SMILES VAE trained on 1,500
molecules of the shared MOSES test file, then evaluate (per token, exact matches), sample, reconstruct,
interpolate (between indices and typed SMILES), the report, and ``vaekit molecules`` with the MOSES
metrics; a model of plain text draws its strings; bad strings get one line."""

import gzip
import itertools
import json

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import assert_one_line_error, run_in_process

pytest.importorskip("rdkit")

MOSES = "/work/shared/data/moses"


@pytest.fixture(scope="module")
def smiles_run(tmp_path_factory):
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("smiles")
    with gzip.open(f"{MOSES}/test.csv.gz", "rt") as f:
        lines = [line.strip() for line in itertools.islice(f, 1, 1501)]
    (root / "mols.smi").write_text("\n".join(lines) + "\n")
    args = ["train", "--dataset", root / "mols.smi", "--arch", "gru", "--likelihood", "categorical", "--latent-dim", "8"]
    args += ["--hidden", "48", "64", "--embedding-dim", "16", "--epochs", "3", "--batch-size", "100", "--lr", "3e-3"]
    args += ["--beta", "0.2", "--dropout", "0", "0.2", "--seed", "0", "--out", root / "run"]
    assert main([str(a) for a in args]) == 0
    return root


def drawn(path) -> np.ndarray:
    """The picture's pixels; it must hold something besides white."""
    pixels = np.asarray(Image.open(path).convert("L"))
    assert (pixels < 128).mean() > 0.002, f"{path} is blank"
    return pixels


def test_evaluate_reports_per_token_and_exact_matches_without_pca(smiles_run, capsys):
    code, out, _ = run_in_process(capsys, "evaluate", smiles_run / "run", "--iw-samples", "4", "--json", smiles_run / "eval.json")
    assert code == 0 and "per token" in out and "exact match" in out and "PCA" not in out
    result = json.loads((smiles_run / "eval.json").read_text())
    seq = result["sequences"]
    assert 20 < seq["tokens_per_sequence"] < 60 and 0 <= seq["exact_match"] <= 1
    assert seq["neg_elbo_per_token"] == pytest.approx(result["neg_elbo"] / seq["tokens_per_sequence"])
    assert result["code_length"]["bits_per_dim"] is None and "token sequences" in result["code_length"]["note"]


def test_sample_prints_strings_and_draws_molecules(smiles_run, capsys):
    code, out, _ = run_in_process(capsys, "sample", smiles_run / "run", "-n", "6", "--temperature", "0.7", "--out", smiles_run / "s.png")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 7 and all(line and " " not in line for line in lines[:6])  # six strings, then where they went
    drawn(smiles_run / "s.png")
    greedy = run_in_process(capsys, "sample", smiles_run / "run", "-n", "3", "--temperature", "0", "--out", smiles_run / "g.png")
    assert (
        greedy[0] == 0
        and greedy[1]
        == run_in_process(capsys, "sample", smiles_run / "run", "-n", "3", "--temperature", "0", "--out", smiles_run / "g.png")[1]
    )


def test_reconstruct_and_interpolate_print_strings(smiles_run, capsys):
    code, out, _ = run_in_process(capsys, "reconstruct", smiles_run / "run", "-n", "4", "--out", smiles_run / "r.png")
    assert code == 0 and out.count("  ->  ") == 4 and "decoded exactly" in out
    drawn(smiles_run / "r.png")
    code, out, _ = run_in_process(
        capsys, "interpolate", smiles_run / "run", "--between", "0", "CC(=O)Nc1ccc(O)cc1", "--steps", "5", "--out", smiles_run / "i.png"
    )
    assert code == 0 and out.count("\n") == 6 and out.startswith(" 0.00  ")
    drawn(smiles_run / "i.png")
    code, _, err = run_in_process(capsys, "interpolate", smiles_run / "run", "--between", "0", "CC[Xe]C", "--out", smiles_run / "x.png")
    assert_one_line_error(code, err, "unknown token '[Xe]'")
    code, _, err = run_in_process(capsys, "interpolate", smiles_run / "run", "--between", "0", "C" * 200, "--out", smiles_run / "x.png")
    assert_one_line_error(code, err, "200 tokens")


def test_the_report_shows_molecules(smiles_run, capsys):
    code, _, _ = run_in_process(capsys, "report", smiles_run / "run")
    page = (smiles_run / "run" / "report.html").read_text()
    assert code == 0
    for section in ("reconstructions", "samples", "neighbourhood", "interpolation"):
        assert f'id="{section}"' in page and page.split(f'id="{section}"')[1].split("</section>")[0].count("<img") == 1


def test_molecules_scores_samples_with_the_moses_metrics(smiles_run, capsys):
    out_json = smiles_run / "m.json"
    args = ["molecules", smiles_run / "run", "-n", "300", "--reference-size", "100", "--filters", MOSES, "--json", out_json]
    code, out, _ = run_in_process(capsys, *args, "--out", smiles_run / "m.smi")
    assert code == 0, out
    result = json.loads(out_json.read_text())
    metrics = result["metrics"]
    for name in ("valid", "unique@1000", "IntDiv", "Filters", "Novelty", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test"):
        assert name in metrics
    assert 0 <= metrics["valid"] <= 1 and result["sizes"]["generated"] == 300 and result["sizes"]["test"] <= 100
    assert sum(result["invalid"].values()) == 300 - result["sizes"]["valid"] and "  invalid " in out
    assert len((smiles_run / "m.smi").read_text().splitlines()) == 300
    assert "the run's validation split (100 drawn, seed 0)" == result["references"]["test"]
    drawn(smiles_run / "m.png")


def test_syntax_rules_make_every_sample_parse_and_the_scores_record_them(smiles_run, capsys):
    from rdkit import Chem

    from vaekit.data.syntax import SmilesSyntax
    from vaekit.molecules import chem
    from vaekit.runs import load
    from vaekit.strings import StringCodec, sample_strings

    run = load(smiles_run / "run")
    codec = StringCodec.of_run(run)
    free, kept = (sample_strings(run.model, codec, 500, seed=1, syntax=syntax) for syntax in (False, True))
    assert sample_strings(run.model, codec, 500, seed=1, syntax=codec.syntax()) == kept  # the rules themselves: the same
    alone = sample_strings(run.model, codec, 500, seed=1, syntax=SmilesSyntax(codec.vocabulary.tokens, valences=False))

    def share(strings, read):
        return sum(read(s) is not None for s in strings) / len(strings)

    parses = lambda s: Chem.MolFromSmiles(s, sanitize=False)  # noqa: E731  (syntax alone, no valences)
    assert min(share(alone, parses), share(kept, parses)) >= 0.95 > 0.5 > share(free, parses)  # (a few cut at its length)
    assert share(kept, chem.parse) > 1.5 * share(alone, chem.parse) > share(free, chem.parse)  # valences: molecules
    code, out, _ = run_in_process(capsys, "sample", smiles_run / "run", "-n", "5", "--syntax", "--out", smiles_run / "syntax.png")
    assert code == 0 and all(parses(line) is not None for line in out.strip().splitlines()[:5])
    out_json = smiles_run / "syntax.json"
    args = ["molecules", smiles_run / "run", "-n", "200", "--syntax", "--reference-size", "100", "--no-fcd", "--filters", MOSES]
    code, out, _ = run_in_process(capsys, *args, "--json", out_json, "--out", smiles_run / "syntax.smi")
    assert code == 0 and "keeping to SMILES syntax" in out
    result = json.loads(out_json.read_text())
    assert result["syntax"] is True and 0 < result["metrics"]["valid"] <= 1 and result["invalid"]["syntax"] <= 10  # (cut at its length)


def test_a_model_of_text_draws_its_strings_and_is_refused_by_molecules_and_the_explorer(tmp_path, capsys):
    path = tmp_path / "words.txt"
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"] * 25
    path.write_text("\n".join(words) + "\n")
    code, _, _ = run_in_process(
        capsys, "train", "--dataset", path, "--arch", "gru", "--likelihood", "categorical", "--latent-dim", "2", "--hidden", "16",
        "--epochs", "2", "--batch-size", "50", "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0
    code, out, _ = run_in_process(capsys, "sample", tmp_path / "run", "-n", "4", "--out", tmp_path / "s.png")
    assert code == 0 and len(out.strip().splitlines()) == 5
    drawn(tmp_path / "s.png")
    code, _, err = run_in_process(capsys, "molecules", tmp_path / "run", "-n", "10")
    assert_one_line_error(code, err, "char tokens, not molecules")
    code, _, err = run_in_process(capsys, "sample", tmp_path / "run", "--syntax", "--out", tmp_path / "s.png")
    assert_one_line_error(code, err, "char tokens have no syntax rules")
    code, _, err = run_in_process(capsys, "explore", tmp_path / "run", "--port", "0")
    assert_one_line_error(code, err, "not char tokens")


def test_token_data_needs_the_sequence_networks(tmp_path, capsys):
    path = tmp_path / "few.smi"
    path.write_text("CCO\nc1ccccc1\nCC(=O)O\nClCCBr\n" * 10)
    code, _, err = run_in_process(capsys, "train", "--dataset", path, "--out", tmp_path / "run")
    assert_one_line_error(code, err, "--arch gru --likelihood categorical")
    code, _, err = run_in_process(capsys, "train", "--arch", "gru", "--likelihood", "categorical", "--out", tmp_path / "run2")
    assert_one_line_error(code, err, "reads token sequences")


def test_optimize_climbs_a_property_and_reports_its_evaluations(smiles_run, capsys):
    out_json = smiles_run / "opt.json"
    args = ["optimize", smiles_run / "run", "--objective", "qed", "--steps", "10", "--starts", "4", "--fit-molecules", "300"]
    code, out, _ = run_in_process(capsys, *args, "--json", out_json, "--out", smiles_run / "opt.png")
    assert code == 0 and "property evaluations" in out and "R²" in out
    result = json.loads(out_json.read_text())
    assert result["decoded"] == 4 * 3 and result["property_evaluations"] == result["found"] <= result["decoded"] - result["invalid"]
    assert all(0 <= m["value"] <= 1 and m["novel"] for m in result["best"])
    if result["best"]:
        drawn(smiles_run / "opt.png")
    code, out, _ = run_in_process(capsys, *args, "--from", "CC(=O)Nc1ccc(O)cc1", "--json", out_json, "--out", smiles_run / "opt.png")
    assert code == 0 and "around CC(=O)Nc1ccc(O)cc1" in out
    free = json.loads(out_json.read_text())
    code, out, _ = run_in_process(
        capsys, *args, "--from", "CC(=O)Nc1ccc(O)cc1", "--syntax", "--json", out_json, "--out", smiles_run / "opt.png"
    )
    kept = json.loads(out_json.read_text())
    assert code == 0 and kept["settings"]["syntax"] and kept["decoded"] == free["decoded"] and kept["invalid"] <= free["invalid"]
    code, _, err = run_in_process(capsys, "optimize", smiles_run / "run", "--objective", "qed", "--from", "CC[Xe]")
    assert_one_line_error(code, err, "unknown token")


def test_training_machinery_works_unchanged_bf16_ema_warmup_and_resume(tmp_path, capsys):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(["alpha", "beta", "gamma", "delta"] * 30) + "\n")
    model = ["--arch", "gru", "--likelihood", "categorical", "--latent-dim", "2", "--hidden", "16", "16", "--batch-size", "40"]
    args = ["train", "--dataset", path, *model, "--epochs", "1", "--precision", "bf16", "--ema", "0.9", "--warmup", "2"]
    assert run_in_process(capsys, *args, "--out", tmp_path / "run")[0] == 0
    code, out, _ = run_in_process(capsys, "train", "--resume", tmp_path / "run", "--epochs", "2")
    assert code == 0 and "trained 2 epochs" in out
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and [float(r.split(",")[2]) for r in rows[1:]] == [0.5, 1.0]  # β warmed up over the two epochs


def test_a_selfies_model_writes_only_valid_molecules(smiles_run, tmp_path, capsys):
    from vaekit.molecules import chem
    from vaekit.runs import load
    from vaekit.strings import StringCodec, sample_strings

    args = ["train", "--dataset", smiles_run / "mols.smi", "--tokenizer", "selfies", "--arch", "gru", "--likelihood", "categorical"]
    args += ["--latent-dim", "4", "--hidden", "32", "32", "--epochs", "1", "--batch-size", "100", "--out", tmp_path / "run"]
    assert run_in_process(capsys, *args)[0] == 0
    run = load(tmp_path / "run")
    written = sample_strings(run.model, StringCodec.of_run(run), 100, temperature=1.0, seed=0)
    smiles = written  # SMILES: the SELFIES symbols drawn, decoded by the tokenizer
    assert sum(chem.parse(s) is not None for s in smiles if s) == sum(1 for s in smiles if s) >= 90  # every non-empty one parses
    code, _, err = run_in_process(capsys, "sample", tmp_path / "run", "--syntax", "--out", tmp_path / "s.png")
    assert_one_line_error(code, err, "SELFIES needs no syntax rules")


def test_the_explorer_draws_molecules_and_encodes_a_typed_smiles(smiles_run):
    import base64

    from starlette.testclient import TestClient

    from vaekit.explore.app import create_app
    from vaekit.explore.explorer import Explorer
    from vaekit.molecules import chem
    from vaekit.runs import load

    run = load(smiles_run / "run")
    explorer = Explorer(run, run.load_data())
    client = TestClient(create_app(explorer), base_url="http://127.0.0.1:8765")
    info = client.get("/api/info").json()
    assert info["view"] == "molecule"
    found = client.post("/api/encode", json={"smiles": "CC(=O)Nc1ccc(O)cc1"}).json()
    assert found["x"]["text"] == ["CC(=O)Nc1ccc(O)cc1"] and len(found["z"]) == 8 and found["neg_elbo"] > 0
    pixels = np.frombuffer(base64.b64decode(found["x"]["pixels"]), dtype=np.uint8).reshape(1, 160, 160, 3)
    assert (pixels < 100).mean() > 0.005  # the molecule is drawn
    samples = client.post("/api/sample", json={"n": 5, "temperature": 0.8}).json()
    assert samples["n"] == 5 and len(samples["text"]) == 5 and samples["shape"] == [3, 160, 160]
    assert info["syntax"] is True
    kept = client.post("/api/sample", json={"n": 40, "syntax": True}).json()["text"]
    assert sum(chem.parse(s) is not None or chem.why_invalid(s) != "syntax" for s in kept) >= 36  # (a few cut at its length)
    assert client.post("/api/sample", json={"n": 5, "syntax": "yes"}).status_code == 400
    strips = client.post("/api/interpolate", json={"a": found["z"], "b": [0.0] * 8, "steps": 4}).json()
    assert len(strips["linear"]["text"]) == 4
    assert client.post("/api/neighbours", json={"z": found["z"], "k": 3}).json()["images"]["n"] == 3
    bad = client.post("/api/encode", json={"smiles": "CC[Xe]"})
    assert bad.status_code == 400 and "unknown token '[Xe]'" in bad.json()["error"]


def test_anomaly_scores_sequences_by_their_bound_and_refuses_a_squared_error(smiles_run, capsys):
    code, out, _ = run_in_process(
        capsys, "anomaly", smiles_run / "run", "--json", smiles_run / "anomaly.json", "--out", smiles_run / "a.csv"
    )
    assert code == 0, out
    result = json.loads((smiles_run / "anomaly.json").read_text())
    assert result["score"] == "neg-elbo" and result["flagged"] >= 1
    code, _, err = run_in_process(capsys, "anomaly", smiles_run / "run", "--score", "reconstruction")
    assert_one_line_error(code, err, "has no mean")
    for command in ("traverse", "manifold", "pseudo-inputs"):
        code, _, err = run_in_process(capsys, command, smiles_run / "run")
        assert_one_line_error(code, err, "needs 1- or 3-channel images")
    code, _, err = run_in_process(capsys, "compress", smiles_run / "run", smiles_run / "mols.smi", "-o", smiles_run / "x.vkz")
    assert_one_line_error(code, err, "'categorical'")
