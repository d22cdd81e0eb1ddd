"""Strings as token sequences: tokenizers round-trip, the vocabulary encodes and decodes with its
specials, bad files are refused in one line naming file and line, --max-length refuses or truncates,
and MOSES loads from the shared folder with its checksums checked (and says how to get it when missing)."""

import gzip
import itertools
import logging

import numpy as np
import pytest
import torch

import vaekit.data.download as dl
from vaekit.config import DataConfig
from vaekit.data import TOKENIZERS, TOKENS, SourceSettings, Vocabulary, load_data, load_examples, vocabulary_of
from vaekit.data.sequences import END, PAD, START
from vaekit.errors import DataError, DataNotFound

SHARED = "/work/shared/data"
MOSES_TEST = f"{SHARED}/moses/test.csv.gz"


@pytest.fixture(scope="module")
def sample():
    with gzip.open(MOSES_TEST, "rt") as f:
        return [line.strip() for line in itertools.islice(f, 1, 2001)]


HAND_MADE = ["CCl", "BrC(Br)Br", "Cc1cc[nH+]cc1", "C1CC%10CCC%101", "F/C=C/F", "F/C=C\\F", "C[C@@H](N)C(=O)O", "[Na+].[Cl-]"]


def test_smiles_tokens_keep_bracket_atoms_two_letter_atoms_and_ring_labels_whole():
    smiles = TOKENIZERS["smiles"]()
    assert smiles.tokens("ClC[nH+]Br%12[C@@H]/\\") == ["Cl", "C", "[nH+]", "Br", "%12", "[C@@H]", "/", "\\"]
    assert TOKENIZERS["char"]().tokens("Cl") == ["C", "l"]
    assert sorted(TOKENIZERS.names()) == sorted(DataConfig.__dataclass_fields__["tokenizer"].metadata["flag"]["choices"])


@pytest.mark.parametrize("name", ["char", "smiles"])
def test_char_and_smiles_round_trip_every_line_one_by_one_and_all_at_once(name, sample):
    tokenizer = TOKENIZERS[name]()
    lines = sample + HAND_MADE
    assert all(tokenizer.join(tokenizer.tokens(s)) == s for s in lines)
    codes = tokenizer.split(lines)  # the vectorised path gives the same tokens
    assert codes.counts.tolist() == [len(tokenizer.tokens(s)) for s in lines]
    flat = [codes.token(int(c)) for c in codes.codes]
    assert flat == [t for s in lines for t in tokenizer.tokens(s)]


def test_selfies_decode_to_the_same_molecule(sample):
    from rdkit import Chem

    selfies = TOKENIZERS["selfies"]()
    for s in sample[:300] + HAND_MADE:
        back = selfies.join(selfies.tokens(s))
        assert Chem.CanonSmiles(back) == Chem.CanonSmiles(s), s


def test_vocabulary_encodes_with_start_end_padding_and_decodes_back():
    tokenizer = TOKENIZERS["smiles"]()
    lines = ["CCl", "c1ccccc1Br", "O"]
    tokens = [tokenizer.tokens(s) for s in lines]
    vocab = Vocabulary.build([tokenizer.split(lines)], "smiles")
    assert vocab.tokens[:3] == [PAD, START, END] and vocab.tokens[3:] == sorted(vocab.tokens[3:])
    x, lengths = vocab.encode(tokens)
    assert x.dtype == torch.int64 and x.shape == (3, 11) and lengths.tolist() == [4, 11, 3]
    assert x[:, 0].eq(vocab.start).all() and x[2].tolist() == [1, vocab.index["O"], 2] + [0] * 8
    assert vocab.decode(x) == lines and vocab.decode_tokens(x[:1]) == [["C", "Cl"]]
    again = Vocabulary.from_record(vocab.record())
    assert again.tokens == vocab.tokens and again.decode(x) == lines
    with pytest.raises(DataError, match=r"^line 2: unknown token 'N' \(not in the vocabulary\)$"):
        vocab.encode([["C"], ["C", "N"]])


def write(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.smi", "CCO\n\nCCN\n", r"empty\.smi, line 2: an empty line"),
        ("long.smi", "CCO\n" + "C" * 10_000 + "\n", r"long\.smi, line 2: 10000 tokens, more than max_length 100"),
        ("nul.smi", b"CCO\nCC\x00N\n", r"nul\.smi, line 2: a NUL byte"),
        ("latin.smi", b"CCO\nCCN\n\xe9\xff\n", r"latin\.smi, line 3: not UTF-8 text"),
        ("bad.smi", "CCO\nC1CC\n", r"bad\.smi, line 2: not a valid SMILES: 'C1CC'"),
        ("bad.csv", "name,SMILES\na,CCO\nb,xyz\n", r"bad\.csv, line 3: not a valid SMILES: 'xyz'"),
    ],
)
def test_bad_files_are_refused_in_one_line_naming_file_and_line(tmp_path, caplog, name, content, message):
    path = write(tmp_path / name, content)
    with caplog.at_level(logging.CRITICAL, logger="rdkit"), pytest.raises(DataError, match=message) as e:
        load_data(path, preprocessing={"max_length": 100, "tokenizer": "smiles"})
    assert "\n" not in str(e.value)


def test_selfies_refusal_names_the_line(tmp_path, monkeypatch):
    import selfies

    def refuse(text, strict=True):
        if text == "CCN":
            raise selfies.EncoderError("refused")
        return "[C]"

    monkeypatch.setattr(selfies, "encoder", refuse)
    with pytest.raises(DataError, match=r"s\.smi, line 2: SELFIES cannot encode 'CCN'"):
        load_data(write(tmp_path / "s.smi", "CCO\nCCN\n"), preprocessing={"tokenizer": "selfies"})


def test_many_selfies_are_encoded_by_a_pool_once_then_read_from_the_cache(sample, tmp_path, monkeypatch):
    import selfies

    import vaekit.data.tokenizers as tk

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(tk, "SELFIES_POOL_MIN", 100)
    monkeypatch.setattr(tk, "SELFIES_CHUNK", 150)  # 2,008 strings: 14 tasks over two processes
    tokenizer = TOKENIZERS["selfies"]()
    lines = sample + HAND_MADE
    codes = tokenizer.split(lines)
    assert codes.counts.tolist() == [len(tokenizer.tokens(s)) for s in lines]  # the symbols split_selfies cuts, in order
    assert [codes.token(int(c)) for c in codes.codes] == [t for s in lines for t in tokenizer.tokens(s)]
    (kept,) = (tmp_path / "vaekit" / "selfies").iterdir()
    assert kept.name.endswith(f"-selfies-{selfies.__version__}.npz") and not list(kept.parent.glob("*.partial"))

    def refuse(text, strict=True):
        raise AssertionError("encoded again")

    with monkeypatch.context() as patch:
        patch.setattr(selfies, "encoder", refuse)  # the same strings: read back, none encoded
        again = tokenizer.split(lines)
    assert np.array_equal(again.counts, codes.counts)
    assert [again.token(int(c)) for c in again.codes] == [codes.token(int(c)) for c in codes.codes]
    kept.write_bytes(b"damaged")  # a cache that cannot be read is encoded afresh and written again
    fresh = tokenizer.split(lines)
    assert fresh.counts.tolist() == codes.counts.tolist() and tk._read_codes(kept, len(lines)) is not None


def test_the_pool_names_the_first_refused_string_by_its_place_in_the_whole_list(sample, tmp_path, monkeypatch):
    import vaekit.data.tokenizers as tk

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(tk, "SELFIES_POOL_MIN", 100)
    monkeypatch.setattr(tk, "SELFIES_CHUNK", 100)
    lines = sample[:700] + ["C1CC"] + sample[700:900] + ["C1CC"]
    with pytest.raises(tk.TokenizeError, match=r"SELFIES cannot encode 'C1CC'") as e:
        tk.selfies_codes(lines)  # in a pool of a process per core
    assert e.value.index == 700 and not (tmp_path / "vaekit" / "selfies").exists()  # nothing kept


def test_skip_invalid_drops_bad_smiles_and_reports_the_count(tmp_path):
    lines = ["CCO", "C1CC", "c1ccccc1", "xx", "CCN", "CC(=O)O"] * 4
    data = load_data(write(tmp_path / "m.smi", "\n".join(lines) + "\n"), preprocessing={"skip_invalid": True})
    assert len(data.train) + len(data.valid) == 16 and data.info["sequences"]["skipped_invalid"] == {"train": 8}


def test_smi_names_are_dropped_and_the_record_describes_tokens(tmp_path):
    path = write(tmp_path / "named.smi", "".join(f"{s}\tmol{i}\n" for i, s in enumerate(["CCO", "CCl", "c1ccccc1"] * 5)))
    data = load_data(path, settings=SourceSettings(valid_fraction=0.2))
    info, vocab = data.info, vocabulary_of(data.info)
    assert info["value_range"] == TOKENS and info["vocabulary_size"] == len(vocab) and info["lengths"] is True
    assert info["preprocessing"]["tokenizer"] == "smiles" and info["preprocessing"]["max_length"] == 8 and data.shape == (10,)
    assert set(vocab.decode(data.train.x)) == {"CCO", "CCl", "c1ccccc1"}
    assert torch.equal(data.train.lengths, (data.train.x != 0).sum(1))
    again = load_examples(path, preprocessing=info["preprocessing"])  # read again with the saved vocabulary
    assert again.x.shape == (15, 10) and vocab.decode(again.x)[:3] == ["CCO", "CCl", "c1ccccc1"]


def test_max_length_refuses_or_truncates(tmp_path, caplog):
    path = write(tmp_path / "t.txt", "abc\nabcdefgh\nab\nabcdefghij\n" * 3)
    with pytest.raises(DataError, match=r"t\.txt, line 2: 8 tokens, more than max_length 5 \(6 such line"):
        load_data(path, preprocessing={"max_length": 5})
    with caplog.at_level(logging.WARNING):
        data = load_data(path, preprocessing={"max_length": 5, "truncate": True})
    assert "truncated 6 string(s) to 5 tokens" in caplog.text and data.info["sequences"]["truncated"] == {"train": 6}
    assert data.shape == (7,) and int(data.train.lengths.max()) == 7
    assert set(vocabulary_of(data.info).decode(data.train.x)) <= {"abc", "abcde", "ab"}
    with pytest.raises(DataError, match="truncate needs max_length"):
        load_data(path, preprocessing={"truncate": True})


def test_a_csv_column_is_read_as_sequences_given_a_tokenizer(tmp_path):
    path = write(tmp_path / "t.csv", 'id,text\n1,"hello, world"\n2,abc\n3,xyz\n4,hi\n')
    data = load_data(path, preprocessing={"tokenizer": "char", "column": "text"}, settings=SourceSettings(valid_fraction=0.25))
    assert "hello, world" in vocabulary_of(data.info).decode(torch.cat([data.train.x, data.valid.x]))
    with pytest.raises(DataError, match=r"no column 'SMILES'; its columns are id, text"):
        load_data(path, preprocessing={"tokenizer": "char"})


def test_moses_loads_a_subset_from_the_shared_folder():
    data = load_data("moses", settings=SourceSettings(data_dir=SHARED, valid_fraction=0.1), preprocessing={"max_examples": 2000})
    assert (len(data.train), len(data.valid), len(data.test)) == (1800, 200, 176_074)
    vocab = vocabulary_of(data.info)
    assert data.info["value_range"] == TOKENS and data.info["vocabulary_size"] == len(vocab) and "Cl" in vocab.index
    with gzip.open(MOSES_TEST, "rt") as f:
        first = [next(f).strip() for _ in range(3)][1:]
    assert vocab.decode(data.test.x[:2]) == first
    scaffolds = load_data("moses-scaffolds", settings=SourceSettings(data_dir=f"{SHARED}/moses"), preprocessing={"max_examples": 500})
    assert len(scaffolds.test) == 176_225


def test_moses_checksum_mismatch_and_missing_files_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / "moses"
    folder.mkdir()
    for name in ("train.csv.gz", "test.csv.gz"):
        (folder / name).write_bytes(gzip.compress(b"SMILES\nCCO\n"))
    with pytest.raises(DataError, match=r"checksum mismatch for .*train\.csv\.gz: expected md5 712ffb13b3c0e4c24ab3faab75f5eb9e"):
        load_data("moses", settings=SourceSettings(data_dir=str(tmp_path)))
    empty = tmp_path / "empty"
    with pytest.raises(
        DataNotFound, match=r"^moses files not found: place train\.csv\.gz, test\.csv\.gz in .*empty/moses \(or pass download=True"
    ):
        load_data("moses", settings=SourceSettings(data_dir=str(empty)))

    def offline(url, timeout=None):
        raise dl.urllib.error.URLError("no network")

    monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
    with pytest.raises(
        DataError, match=r"cannot download train\.csv\.gz .*\(offline\?\).*place train\.csv\.gz, test\.csv\.gz in .*empty/moses by hand"
    ):
        load_data("moses", settings=SourceSettings(data_dir=str(empty), download=True))


def test_moses_download_checks_the_sums(tmp_path, monkeypatch):
    served = {}

    class Response:
        def __init__(self, data):
            self.data = [data, b""]

        def read(self, n):
            return self.data.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def opener(url, timeout=None):
        served[url] = True
        return Response(b"not the file")

    monkeypatch.setattr(dl.urllib.request, "urlopen", opener)
    with pytest.raises(DataError, match=r"checksum mismatch for train\.csv\.gz"):
        load_data("moses", settings=SourceSettings(data_dir=str(tmp_path), download=True))
    assert all(url.endswith("train.csv.gz") and "molecularsets/moses" in url for url in served)
    assert not list((tmp_path / "moses").iterdir())  # nothing half-downloaded is kept


def test_encoding_is_vectorised_and_matches_the_slow_path(sample):
    tokenizer = TOKENIZERS["smiles"]()
    vocab = Vocabulary.build([tokenizer.split(sample)], "smiles")
    fast, lengths = vocab.encode_codes(tokenizer.split(sample))
    slow, slow_lengths = vocab.encode([tokenizer.tokens(s) for s in sample])
    assert torch.equal(fast, slow) and torch.equal(lengths, slow_lengths)
    assert np.array_equal(lengths.numpy(), [len(tokenizer.tokens(s)) + 2 for s in sample])


def test_the_train_command_reads_strings_with_its_flags(tmp_path, capsys):
    from vaekit.cli import main

    path = tmp_path / "few.smi"
    path.write_text("CCO\nc1ccccc1\nCC(=O)O\nClCCBr\n")
    assert main(["train", "--dataset", str(path), "--tokenizer", "smiles", "--max-length", "3", "--out", str(tmp_path / "run")]) == 2
    assert "line 2: 8 tokens, more than max_length 3" in capsys.readouterr().err
    assert main(["train", "--dataset", str(path), "--tokenizer", "smiles", "--out", str(tmp_path / "run")]) == 2
    assert "train them with --arch gru --likelihood categorical" in capsys.readouterr().err  # read whole, refused by the image networks
