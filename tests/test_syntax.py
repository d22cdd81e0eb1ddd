"""SMILES syntax rules for the sampler (``vaekit.data.syntax``): they admit every token of real molecules,
and a decoder that keeps to them writes strings that RDKit parses (syntax only, no chemistry), where the
same decoder left free mostly does not; other tokenizers are refused in one line."""

import gzip
import itertools

import numpy as np
import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.data.sequences import Vocabulary
from vaekit.data.syntax import ATOM, BOND, CLOSE, DOT, OPEN, OTHER, RING, UNLIMITED, SmilesSyntax, atom_capacity, smiles_class, syntax_of
from vaekit.data.tokenizers import SmilesTokenizer
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.models.sequence import END, PAD, START

MOSES = "/work/shared/data/moses"


@pytest.fixture(scope="module")
def molecules():
    """(the vocabulary, (N, T) ids) of 3,000 molecules of MOSES's test file."""
    with gzip.open(f"{MOSES}/test.csv.gz", "rt") as f:
        lines = [line.strip() for line in itertools.islice(f, 1, 3001)]
    codes = SmilesTokenizer().split(lines)
    vocabulary = Vocabulary.build([codes], "smiles")
    ids, _ = vocabulary.encode_codes(codes)
    return vocabulary, ids


@pytest.mark.parametrize(
    "token, cls",
    [("C", ATOM), ("c", ATOM), ("Cl", ATOM), ("Br", ATOM), ("[nH]", ATOM), ("[C@@H]", ATOM), ("*", ATOM), ("1", RING)]
    + [("%12", RING), ("(", OPEN), (")", CLOSE), ("=", BOND), ("#", BOND), ("/", BOND), ("\\", BOND), (".", DOT), ("?", OTHER)],
)
def test_each_smiles_token_has_its_class(token, cls):
    assert smiles_class(token) == cls


def walk(syntax, ids, length=None):
    """(N, T − 1) bool: whether the rules admitted each stored token after <start> (True at padding), for
    sequences of at most ``length`` tokens (default T)."""
    state = syntax.start(len(ids), length or ids.shape[1], ids.device)
    admitted = []
    for t in range(1, ids.shape[1]):
        token = ids[:, t]
        admitted.append(syntax.allowed(state).gather(1, token[:, None])[:, 0] | (token == PAD))
        state = syntax.advance(state, token)
    return torch.stack(admitted, 1)


def test_the_rules_admit_every_token_of_real_molecules(molecules):
    vocabulary, ids = molecules
    syntax = syntax_of(vocabulary)
    assert walk(syntax, ids, length=ids.shape[1] + syntax.margin).all()


def test_short_of_room_nothing_opens_and_what_can_close_must():
    vocabulary = Vocabulary(["<pad>", "<start>", "<end>", "(", ")", "1", "C"], "smiles")
    syntax = SmilesSyntax.from_vocabulary(vocabulary)
    ids = torch.tensor([[START, 6, 5, 3, 6, 6]])  # C1(CC: a branch and a ring bond open
    state = syntax.start(1, 20, ids.device)
    for token in ids[0, 1:]:
        state = syntax.advance(state, token[None])
    assert state.left == 20 - 2 - 5 and syntax.allowed(state)[0].tolist() == [False, False, False, True, True, True, True]
    state.left = 2 + syntax.margin  # no room to open more: close the branch or the ring, nothing else
    assert syntax.allowed(state)[0].tolist() == [False, False, False, False, True, True, False]


@pytest.mark.parametrize(
    "text, bad",
    [
        ("C)C", 1),  # no branch open
        ("C(C", 3),  # <end> with a branch open
        ("C1CC", 4),  # <end> with a ring bond open
        ("C()C", 2),  # an empty branch
        ("C=", 2),  # <end> after a bond
        ("(C)", 0),  # a branch before any atom
        ("C(C)1C", 4),  # a ring bond after a branch
        ("C(.C)", 2),  # a dot inside a branch
        ("C11", 2),  # a ring bond closed on the atom that opened it
        ("C1C1", 3),  # ... on that atom's neighbour
        ("C1(C)C=1", 7),  # ... on its neighbour after a branch
        ("C12CC12", 6),  # ... a second time between the same two atoms
        ("C(C)=1", 5),  # a bond after a branch leads to an atom
        ("C(=1)", 3),  # ... as one that starts a branch does
        ("C1CC1", 6),  # a ring of three: every token admitted, <end> too
    ],
)
def test_the_rules_refuse_the_first_token_that_breaks_smiles(text, bad):
    vocabulary = Vocabulary(["<pad>", "<start>", "<end>", "(", ")", ".", "1", "2", "=", "C"], "smiles")
    tokens = [vocabulary.index[t] for t in SmilesTokenizer().tokens(text)]
    ids = torch.tensor([[START, *tokens, END]])
    admitted = walk(SmilesSyntax.from_vocabulary(vocabulary), ids, length=64)[0]  # (room to spare)
    assert admitted[:bad].all() and (bad == len(admitted) or not admitted[bad])


@pytest.mark.parametrize(
    "token, capacity",
    [("C", 4), ("c", 4), ("N", 3), ("n", 3), ("O", 2), ("F", 1), ("Cl", 1), ("Br", 1), ("S", 6), ("P", 7), ("B", 3), ("[H]", 1)]
    + [("[nH]", 2), ("[C@@H]", 3), ("[C@@]", 4), ("[NH4+]", 0), ("[NH3+]", 1), ("[N+]", 4), ("[n+]", 4), ("[O-]", 1), ("[N-]", 2)]
    + [("[C-]", 3), ("[O+]", 3), ("[S-]", 1), ("[13CH3]", 1), ("[2H]", 1), ("[F-]", 0), ("[Na+]", UNLIMITED), ("*", UNLIMITED)],
)
def test_each_atom_token_has_the_bonds_rdkit_admits(token, capacity):
    assert atom_capacity(token) == capacity


@pytest.mark.parametrize(
    "text, bad",
    [
        ("C(C)(C)(C)(C)C", 13),  # a fifth bond on carbon
        ("FC(F)(F)(F)F", 11),  # ... from a fifth fluorine
        ("F(C)C", 4),  # a second bond on fluorine
        ("C=F", 2),  # a double bond to an atom that takes one
        ("O=O=O", 3),  # a double bond from an oxygen that has one
        ("N#N=C", 3),  # ... from a nitrogen with a triple bond
        ("C1(=O)C=C=1", 10),  # a ring bond of order 2 closing on a carbon with one bond order left
        ("[NH4+]C", 1),  # an ammonium takes no bond
        ("OC(=O)C1CC(=O)N1", None),  # every token admitted
        ("C#1CC1", None),  # a triple ring bond: valid, admitted
        ("[NH3+]C.[O-]C.F.F", None),  # charges, and atoms after a dot bond to nothing
    ],
)
def test_the_rules_refuse_the_first_bond_an_atom_cannot_take(text, bad):
    vocabulary = Vocabulary(
        ["<pad>", "<start>", "<end>", "(", ")", ".", "1", "=", "#", "C", "F", "O", "N", "[NH4+]", "[NH3+]", "[O-]"], "smiles"
    )
    tokens = [vocabulary.index[t] for t in SmilesTokenizer().tokens(text)]
    ids = torch.tensor([[START, *tokens, END]])
    admitted = walk(SmilesSyntax.from_vocabulary(vocabulary), ids, length=64)[0]
    assert admitted[: bad or len(admitted)].all() and (bad is None or not admitted[bad])
    assert walk(SmilesSyntax(vocabulary.tokens, valences=False), ids, length=64).all()  # syntax alone admits them all


@pytest.mark.parametrize(
    "text, bad",
    [("C1CCl", 3), ("C1CC(=O)O", None), ("C1CC1Cl", None), ("C1C2CC12", None), ("C1CC=O", 5), ("C1CN(=O)C1", 5), ("C1CC(=O)C1", None)]
    + [("C1CN(C)C1", None), ("C1CN(C)(C)C1", 7)],
)
def test_without_dots_no_atom_is_left_a_dead_end(text, bad):
    """Outside every branch with a ring bond open, an atom with no bond left could neither close it nor end."""
    vocabulary = Vocabulary(["<pad>", "<start>", "<end>", "(", ")", "1", "2", "=", "C", "N", "O", "Cl"], "smiles")
    ids = torch.tensor([[START, *(vocabulary.index[t] for t in SmilesTokenizer().tokens(text)), END]])
    admitted = walk(SmilesSyntax.from_vocabulary(vocabulary), ids, length=64)[0]
    assert admitted[: bad or len(admitted) - 1].all() and (bad is None or not admitted[bad])


def smiles_parse(strings):
    """The share of strings RDKit reads as SMILES without sanitising (syntax only, no valences)."""
    chem = pytest.importorskip("rdkit.Chem")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    return np.mean([bool(s) and chem.MolFromSmiles(s, sanitize=False) is not None for s in strings])


def untrained_decoding(vocabulary, length):
    """An untrained GRU decoder's distribution over 400 strings, whose output bias sets each token's odds."""
    torch.manual_seed(0)
    config = ModelConfig(
        arch="gru", likelihood="categorical", input_shape=(length,), vocabulary_size=len(vocabulary), latent_dim=4, hidden=(16, 16)
    )
    model = build_model(config).eval()
    with torch.no_grad():
        model.decoder.out.bias.copy_(torch.randn(len(vocabulary)) * 0.5)
        model.decoder.out.bias[END] = 1.5  # strings that mostly end before the model's length
    return model.decode(torch.randn(400, 4))


def test_a_decoder_that_keeps_to_the_rules_writes_strings_that_parse(molecules):
    vocabulary, ids = molecules
    px = untrained_decoding(vocabulary, ids.shape[1])
    syntax = syntax_of(vocabulary)
    free = px.sample(generator=torch.Generator().manual_seed(1))
    kept = px.obeying(syntax).sample(generator=torch.Generator().manual_seed(1))
    ended = (kept == END).float().argmax(1) < kept.shape[1] - 1  # not cut at the model's length (an <end> put there)
    assert ended.sum() > 150 and walk(syntax, kept)[:, :-1].all() and walk(syntax, kept[ended]).all()
    assert not walk(syntax, free).all()
    assert smiles_parse(vocabulary.decode(kept[ended])) == 1.0
    assert smiles_parse(vocabulary.decode(free)) < 0.5
    greedy = px.tempered(0).obeying(syntax).sample()
    assert walk(syntax, greedy).all() and torch.equal(greedy, px.tempered(0).obeying(syntax).sample())
    assert px.obeying(syntax).tempered(0.5).syntax is syntax  # tempering keeps the rules


def test_kept_to_valences_the_strings_rarely_give_an_atom_too_many_bonds(molecules):
    chem = pytest.importorskip("vaekit.molecules.chem")
    vocabulary, ids = molecules
    px = untrained_decoding(vocabulary, ids.shape[1])
    reasons = {}
    for valences in (False, True):
        kept = px.obeying(SmilesSyntax(vocabulary.tokens, valences=valences)).sample(generator=torch.Generator().manual_seed(1))
        ended = (kept == END).float().argmax(1) < kept.shape[1] - 1
        reasons[valences] = [chem.why_invalid(s) for s in vocabulary.decode(kept[ended])]
    share = {valences: np.mean([r == "valence" for r in found]) for valences, found in reasons.items()}
    assert share[False] > 0.5 and share[True] < 0.1  # (what is left: aromatic atoms, whose ring bonds the rules count as 1)
    assert np.mean([r is None for r in reasons[True]]) > 2 * np.mean([r is None for r in reasons[False]])


@pytest.mark.parametrize("tokenizer, message", [("selfies", "SELFIES needs no syntax rules"), ("char", "char tokens have no syntax rules")])
def test_tokenizers_without_rules_are_refused_in_one_line(tokenizer, message):
    with pytest.raises(ConfigError, match=message):
        syntax_of(Vocabulary(["<pad>", "<start>", "<end>", "C"], tokenizer))


def test_a_vocabulary_without_atoms_is_refused():
    with pytest.raises(ConfigError, match="vocabulary with atoms"):
        SmilesSyntax(["<pad>", "<start>", "<end>", "(", ")"])
