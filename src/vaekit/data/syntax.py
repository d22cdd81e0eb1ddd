"""Syntax rules a sampler can keep to, one token at a time (``SYNTAXES``, by tokenizer name).

A ``TokenSyntax`` follows a whole batch of sequences as they are drawn and says, before each step, which
tokens may come next: ``allowed(state)`` (N, V) bool. The decoder's logits of the others are set to −∞
before it draws, so a sample comes from the model's distribution renormalised, step by step, over the
strings the rules admit (greedy decoding takes the most probable admitted token). Every step is a few
tensor operations over the batch, with lookup tables over the vocabulary: no Python per sequence.

``smiles``: SMILES's grammar as far as a left-to-right reader can keep it without chemistry: a string starts
with an atom; a branch ``(`` follows an atom, a ring bond or another branch and starts with an atom or a
bond; ``)`` closes an open branch that holds an atom; a ring-bond label (``1``, ``%12``) follows an atom,
a ring bond or a bond symbol after one, and opens the label or closes it (never where it would bond two
atoms bonded already: on the atom that opened it, on that atom's neighbour along the chain, or a second
ring bond between the same two atoms; nor does a label open again on the atom it closed on); a bond
symbol after an atom or a ring bond is followed by an atom or a ring bond, one that starts or follows a
branch by an atom; ``.`` (a second molecule) stands outside every branch and before an atom; ``<end>``
comes after an atom, a ring bond or ``)`` with no branch and no ring bond open.

The model's length bounds a string, and a sampler that kept these rules but not the length would often
be cut there with a branch or a ring bond open: once the positions left are no more than one per open
branch and ring bond and ``margin`` more, nothing new may open, and where something can be closed only
closing is drawn.

With ``valences`` (the default) the rules also count bonds: each atom token can take so many bond orders
(``atom_capacity``: the most RDKit admits for its element and charge, less its explicit hydrogens; an
aromatic bond counts 1, so no real molecule is refused), and no atom, branch, bond symbol or ring bond is
drawn that would give an atom more; where the vocabulary has no ``.``, nor one that would leave an atom
outside every branch with no bond left while a ring bond is open (it could neither close it nor end; a
branch from such an atom keeps a bond for the chain that goes on after its ``)``, as canonical SMILES's
chains do). What
the rules cannot rule out is the aromatic rings that cannot be kekulised (and an aromatic atom given three
bonds and a fourth, which the count of 1 lets through).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vaekit.errors import ConfigError
from vaekit.registry import Registry

if TYPE_CHECKING:
    from vaekit.data.sequences import Vocabulary

PAD, START, END = 0, 1, 2  # the ids ``Vocabulary`` gives its special tokens


class TokenSyntax(ABC):
    """Which tokens may come next, for a batch of sequences drawn together (an interface)."""

    name: str

    @abstractmethod
    def start(self, n: int, length: int, device: torch.device) -> object:
        """The state of n sequences of at most ``length`` tokens that hold only ``<start>``."""

    @abstractmethod
    def allowed(self, state: object) -> torch.Tensor:
        """(N, V) bool: the tokens each sequence may take next (at least one per row)."""

    @abstractmethod
    def advance(self, state: object, token: torch.Tensor) -> object:
        """The state after each sequence took token (N,) ids (``state`` may be updated in place and returned)."""


SYNTAXES: Registry[type[TokenSyntax]] = Registry("syntax")

# the classes of SMILES tokens, the rows of ``SmilesSyntax.follows``
BEGIN, ATOM, RING, OPEN, CLOSE, BOND, DOT, ENDS, OTHER, LEAD = range(10)  # LEAD: a bond not after an atom (``(=``)
_ATOM = re.compile(r"\[.*\]|Br|Cl|[BCNOSPFIbcnops*]")
_RING = re.compile(r"\d|%\d\d")
_SINGLE = {"(": OPEN, ")": CLOSE, ".": DOT, "-": BOND, "=": BOND, "#": BOND, "$": BOND, ":": BOND, "/": BOND, "\\": BOND}
BOND_ORDER = {"-": 1, "=": 2, "#": 3, "$": 4, ":": 1, "/": 1, "\\": 1}  # an aromatic bond (``:``, or implicit) counts 1
# the most bond orders RDKit admits on each neutral element (N: 3; P 3, 5 or 7; S 2, 4 or 6; I 1, 3 or 5)
VALENCE = {"H": 1, "B": 3, "C": 4, "N": 3, "O": 2, "F": 1, "Si": 4, "P": 7, "S": 6, "Cl": 1, "As": 5, "Se": 6, "Br": 1, "Te": 6, "I": 5}
_PERIODS = (("B", "C", "N", "O", "F"), ("Al", "Si", "P", "S", "Cl"), ("Ga", "Ge", "As", "Se", "Br"), ("In", "Sn", "Sb", "Te", "I"))
UNLIMITED = 8  # the capacity of an element the table does not hold, and of ``*``: no limit in practice
_BRACKET = re.compile(r"\[(?:\d+)?(?P<element>[A-Z][a-z]?|[a-z][a-z]?|\*)@*(?:H(?P<h>\d*))?(?P<charge>[+-]+|[+-]\d+)?(?::\d+)?\]")


def smiles_class(token: str) -> int:
    """The class of one SMILES token: ATOM, RING, OPEN, CLOSE, BOND, DOT, or OTHER (no rule applies to it)."""
    if _ATOM.fullmatch(token):
        return ATOM
    if _RING.fullmatch(token):
        return RING
    return _SINGLE.get(token, OTHER)


def atom_capacity(token: str) -> int:
    """How many bond orders an atom token can take: its element's most under RDKit's rules, read for its charge
    as the element it is isoelectronic with in its row (``[N+]`` as C: 4; ``[O-]`` as F: 1), less its explicit
    hydrogens (``[nH]``: 2); ``UNLIMITED`` for an element outside the table and for ``*``."""
    bracket = _BRACKET.fullmatch(token)
    element, hydrogens, charge = (bracket["element"], bracket["h"], bracket["charge"]) if bracket else (token, None, None)
    element = element[0].upper() + element[1:]  # an aromatic atom has its element's valence (its ring bonds count 1)
    shift = 0
    if charge:
        sign = 1 if charge[0] == "+" else -1
        shift = sign * (int(charge[1:]) if charge[1:].isdigit() else len(charge))
    row = next((row for row in _PERIODS if element in row), None)
    if shift and row is not None:
        place = row.index(element) - shift
        valence = VALENCE.get(row[place], UNLIMITED) if 0 <= place < len(row) else 0
    else:
        valence = VALENCE.get(element, UNLIMITED) if not shift else UNLIMITED
    held = 0 if hydrogens is None else int(hydrogens or 1)
    return max(valence - held, 0)


@dataclass
class SmilesState:
    """Each of N sequences' place in the grammar: previous (N,) the class of its last token; depth (N,) its
    open branches; atoms (N,) its atoms so far; current (N,) the atom a bond would start from (−1: none);
    parent_of (N, A) each atom's neighbour before it (−1: the first of a molecule); branch_from (N, A) the
    atom each open branch starts from, by depth; open (N, R + 1) which ring-bond labels are open, and each
    open label's atom and that atom's parent (opened_at, opened_parent; column R: not a label, never read);
    joined (N, R + 1) the atoms the current atom's ring bonds have closed on, by label (−1: none); with
    valences, free (N, A) the bond orders each atom can still take, pending (N,) the order of a bond symbol
    just drawn (0: none), opened_order (N, R + 1) the order each open ring bond was opened with."""

    previous: torch.Tensor
    depth: torch.Tensor
    atoms: torch.Tensor
    current: torch.Tensor
    parent_of: torch.Tensor
    branch_from: torch.Tensor
    open: torch.Tensor
    opened_at: torch.Tensor
    opened_parent: torch.Tensor
    joined: torch.Tensor
    free: torch.Tensor
    pending: torch.Tensor
    opened_order: torch.Tensor
    left: int  # the positions left before the one kept for <end>, this one included


@SYNTAXES.register("smiles")
class SmilesSyntax(TokenSyntax):
    """SMILES's branch, ring-bond and bond syntax (the module's docstring) over a vocabulary of SMILES tokens:
    a table of which token classes may follow which, and a state per sequence for what the table cannot
    see (open branches and ring bonds, which atoms are bonded, the positions left, and with ``valences``
    the bonds each atom can still take)."""

    margin = 4  # positions kept free, beyond one per open branch and ring bond, before none may open

    # follows[c]: the token classes that may come after a token of class c (ENDS: ``<end>``)
    follows = {
        BEGIN: {ATOM, OTHER},
        ATOM: {ATOM, RING, OPEN, CLOSE, BOND, DOT, ENDS, OTHER},
        RING: {ATOM, RING, OPEN, CLOSE, BOND, DOT, ENDS, OTHER},
        OPEN: {ATOM, BOND, OTHER},
        CLOSE: {ATOM, OPEN, CLOSE, BOND, DOT, ENDS, OTHER},
        BOND: {ATOM, RING, OTHER},  # a ring bond may carry a bond symbol: ``C=1``
        LEAD: {ATOM, OTHER},  # but a bond that opens a branch or follows one leads to an atom: ``C(=O)``, ``C(C)=O``
        DOT: {ATOM, OTHER},
        OTHER: {ATOM, RING, OPEN, CLOSE, BOND, DOT, ENDS, OTHER},
        ENDS: {ATOM},  # a sequence that has ended takes padding whatever is drawn; a row that admits something
    }

    def __init__(self, tokens: list[str], valences: bool = True):
        classes = [smiles_class(t) for t in tokens]
        classes[PAD], classes[START], classes[END] = BEGIN, BEGIN, ENDS  # PAD and START are never drawn
        if ATOM not in classes:
            raise ConfigError("a SMILES syntax needs a vocabulary with atoms, and this one has none")
        self.classes = torch.tensor(classes)  # (V,)
        table = torch.zeros(max(self.follows) + 1, len(tokens), dtype=torch.bool)
        for before, after in self.follows.items():
            table[before] = torch.isin(self.classes, torch.tensor(sorted(after)))
        table[:, [PAD, START]] = False
        self.table = table  # (classes, V): what may follow each class
        self.rings = torch.tensor([i for i, c in enumerate(classes) if c == RING], dtype=torch.long)  # (R,) the labels' ids
        self.ring_of = torch.full((len(tokens),), len(self.rings), dtype=torch.long)  # (V,): each label's column, R for the rest
        self.ring_of[self.rings] = torch.arange(len(self.rings))
        self.closers = (self.classes == CLOSE) | (self.classes == RING) | (self.classes == ENDS)  # (V,)
        ids = (torch.nonzero(self.classes == c).flatten() for c in (OPEN, CLOSE, DOT, ATOM, BOND))  # each class's token ids
        self.opens, self.closes, self.dots, self.atom_ids, self.bond_ids = ids
        self.valences = valences
        self.capacity = torch.tensor([atom_capacity(t) if c == ATOM else 0 for t, c in zip(tokens, classes, strict=True)])  # (V,)
        self.order = torch.tensor([BOND_ORDER.get(t, 0) if c == BOND else 0 for t, c in zip(tokens, classes, strict=True)])  # (V,)

    @classmethod
    def from_vocabulary(cls, vocabulary: Vocabulary) -> SmilesSyntax:
        return cls(vocabulary.tokens)

    def start(self, n: int, length: int, device: torch.device) -> SmilesState:
        if self.table.device != device:
            tables = ("classes", "table", "rings", "ring_of", "closers", "opens", "closes", "dots")
            for name in (*tables, "atom_ids", "bond_ids", "capacity", "order"):
                setattr(self, name, getattr(self, name).to(device))
        zeros = torch.zeros(n, dtype=torch.long, device=device)
        none = torch.full((n, length + 1), -1, dtype=torch.long, device=device)
        labels = torch.full((n, len(self.rings) + 1), -1, dtype=torch.long, device=device)
        labels = (labels >= 0, labels, labels.clone(), labels.clone())  # open, opened_at, opened_parent, joined
        free, opened_order = torch.zeros_like(none), torch.zeros_like(labels[1])
        return SmilesState(zeros + BEGIN, zeros, zeros, zeros - 1, none, none.clone(), *labels, free, zeros, opened_order, length - 2)

    def allowed(self, state: SmilesState) -> torch.Tensor:
        ok = self.table[state.previous].clone()  # (N, V)
        closed = state.depth == 0  # (N,)
        ok[:, self.closes] &= ~closed.unsqueeze(1)
        ok[:, self.dots] &= closed.unsqueeze(1)
        r = len(self.rings)
        ok[:, END] &= closed & ~state.open[:, :r].any(1)
        current = state.current.unsqueeze(1)  # (N, 1)
        parent = state.parent_of.gather(1, current.clamp_min(0))  # (N, 1)
        at, by = state.opened_at[:, :r], state.opened_parent[:, :r]  # (N, R)
        again = (at.unsqueeze(2) == state.joined[:, :r].unsqueeze(1)).any(2)  # (N, R): a ring bond to an atom joined already
        closes = (at != current) & (at != parent) & (by != current) & ~again  # (N, R): an open label may close here
        reopens = state.joined[:, :r] < 0  # (N, R): a closed label may open again, but not on the atom it closed on
        ok[:, self.rings] &= torch.where(state.open[:, :r], closes, reopens)
        if self.valences:
            ok = self._within_valences(state, ok)
        tight = state.left <= state.depth + state.open[:, :r].sum(1) + self.margin  # (N,): no room to open more
        ok[:, self.opens] &= ~tight.unsqueeze(1)
        ok[:, self.rings] &= ~(tight.unsqueeze(1) & ~state.open[:, :r])
        closing = ok & self.closers  # (N, V): ``)``, a ring bond that closes, ``<end>``
        return torch.where((tight & closing.any(1)).unsqueeze(1), closing, ok)  # short of room: close what can be closed

    def _within_valences(self, state: SmilesState, ok: torch.Tensor) -> torch.Tensor:
        """``ok`` (N, V) less the tokens that would give an atom more bonds than it can take (a row left with
        none keeps ``ok``: the string will be invalid whatever comes)."""
        s, r = state, len(self.rings)
        bonding = (s.previous != BEGIN) & (s.previous != DOT)  # (N,): the next atom, branch or ring bond bonds to s.current
        room = s.free.gather(1, s.current.clamp_min(0).unsqueeze(1)).squeeze(1)  # (N,) the bond orders s.current can still take
        order = torch.where(s.pending > 0, s.pending, 1)  # (N,): the order of the bond the next atom or ring bond makes
        need = torch.where(bonding, order, 0)
        open_rings = s.open[:, :r].sum(1)  # (N,)
        # a dead end: an atom with no bond left, outside every branch, with a ring bond open (a string that can
        # neither close it nor end); where no ``.`` can start another molecule, no token may lead there
        ringed, no_dots = open_rings > 0, int(len(self.dots) == 0)
        keep = (s.depth == 0).long() * no_dots  # (N,) the bond order the next current atom must keep
        returns = ((s.previous == OPEN) & (s.depth == 1) & ringed).long() * no_dots  # (N,) ... where a branch starts
        fits = ok.clone()
        fits[:, self.atom_ids] &= self.capacity[self.atom_ids] >= (need + keep * ringed).unsqueeze(1)
        fits[:, self.atom_ids] &= (room >= need + returns).unsqueeze(1)  # (a branch's ``)`` comes back to this atom)
        fits[:, self.bond_ids] &= room.unsqueeze(1) >= self.order[self.bond_ids] + returns.unsqueeze(1)
        fits[:, self.opens] &= (room >= 1 + keep * ringed).unsqueeze(1)
        was = s.opened_order[:, :r]  # (N, R): each open label's order at its opening
        closing = torch.where(s.pending.unsqueeze(1) > 0, s.pending.unsqueeze(1), was)  # (N, R): a closing ring bond's order
        opener_room = s.free.gather(1, s.opened_at[:, :r].clamp_min(0))  # (N, R)
        closes = (room.unsqueeze(1) >= closing + (keep * (open_rings > 1)).unsqueeze(1)) & (opener_room >= closing - was)  # (N, R)
        opens = room >= order + keep  # (N,)
        fits[:, self.rings] &= torch.where(s.open[:, :r], closes, opens.unsqueeze(1))
        return torch.where(fits.any(1, keepdim=True), fits, ok)

    def advance(self, state: SmilesState, token: torch.Tensor) -> SmilesState:
        s = state  # updated in place: a step's state is read once
        cls = self.classes[token]  # (N,)
        cls = torch.where((cls == BOND) & (s.previous != ATOM) & (s.previous != RING), LEAD, cls)
        rows = torch.arange(len(token), device=token.device)
        atom, opens, closes = cls == ATOM, cls == OPEN, cls == CLOSE
        first = (s.previous == BEGIN) | (s.previous == DOT)
        s.parent_of[rows, torch.where(atom, s.atoms, -1)] = torch.where(first, -1, s.current)  # (column −1: never read)
        s.branch_from[rows, torch.where(opens, s.depth, -1)] = s.current
        label = self.ring_of[token]  # (N,): R where the token is not a label
        opening = ~s.open[rows, label]
        if self.valences:
            self._spend(s, token, rows, label, opening, atom, first)
        s.opened_parent[rows, label] = torch.where(opening, s.parent_of[rows, s.current.clamp_min(0)], -1)
        closed_at = torch.where(opening | atom, -1, s.opened_at[rows, label])
        s.opened_at[rows, label] = torch.where(opening, s.current, -1)
        s.open[rows, label] = opening
        s.joined[atom] = -1
        s.joined[rows, label] = closed_at
        s.current = torch.where(atom, s.atoms, s.current)
        s.atoms = s.atoms + atom.long()
        s.depth = s.depth + opens.long() - closes.long()
        s.current = torch.where(closes, s.branch_from[rows, s.depth.clamp_min(0)], s.current)
        s.previous, s.left = cls, s.left - 1
        return s

    def _spend(self, s: SmilesState, token: torch.Tensor, rows: torch.Tensor, label: torch.Tensor, opening: torch.Tensor,
               atom: torch.Tensor, first: torch.Tensor) -> None:  # fmt: skip
        """Take the bonds ``token`` (N,) makes from the atoms' free bond orders, before ``advance`` moves on (label,
        opening, atom, first: (N,) as ``advance`` has them: the token's ring-label column, whether it opens that
        label, whether it is an atom, whether an atom here would be the first of a molecule)."""
        is_label = label < len(self.rings)
        order = torch.where(s.pending > 0, s.pending, 1)
        was = s.opened_order[rows, label]
        closing = torch.where(s.pending > 0, s.pending, was)
        here = torch.where(atom & ~first, order, 0) + torch.where(is_label, torch.where(opening, order, closing), 0)
        current = s.current.clamp_min(0)  # (where there is none, nothing is spent: ``here`` is 0)
        s.free[rows, current] -= here
        opener = s.opened_at[rows, label].clamp_min(0)
        s.free[rows, opener] -= torch.where(is_label & ~opening, closing - was, 0)
        s.free[rows, torch.where(atom, s.atoms, -1)] = self.capacity[token] - torch.where(first, 0, order)
        s.opened_order[rows, label] = torch.where(opening, order, 0)
        s.pending = self.order[token]


def syntax_of(vocabulary: Vocabulary) -> TokenSyntax:
    """The syntax of the vocabulary's tokenizer; a one-line ``ConfigError`` where it has none."""
    if vocabulary.tokenizer == "selfies":
        raise ConfigError("SELFIES needs no syntax rules: every SELFIES string decodes to a molecule")
    if vocabulary.tokenizer not in SYNTAXES:
        raise ConfigError(f"{vocabulary.tokenizer} tokens have no syntax rules (there are rules for {', '.join(SYNTAXES.names())} tokens)")
    return SYNTAXES[vocabulary.tokenizer].from_vocabulary(vocabulary)
