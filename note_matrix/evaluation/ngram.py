"""Interpolated n-grams of integer symbols: the counting baseline a sequence model must beat.

An order-``n`` model predicts a symbol from the ``n - 1`` before it by recursive
interpolation (Witten-Bell style, with a tuned strength)::

    P_0(x)       = base(x)                                   (a fixed distribution)
    P_j(x | h_j) = (c(h_j, x) + b(h_j) P_{j-1}(x | h_{j-1})) / (c(h_j) + b(h_j))

where ``h_j`` is the last ``j`` symbols (``j = 0``: the unigram), ``c`` counts in the
training sequences, and ``b(h) = strength * types(h)`` (``types(h)``: how many different
symbols followed ``h``; ``strength`` 1 is Witten-Bell). A context never seen in training
stops the recursion there. ``NGram.tune`` picks ``strength`` on validation sequences
(lowest NLL). Contexts never cross from one sequence into the next.

Symbols are ``0 .. V - 1``; ``base`` may leave mass ``1 - sum(base)`` to symbols outside
them (say, events never seen in training): ``escape`` gives, per position, the factor
by which such a symbol's base probability reaches the final distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRENGTHS = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class _Context:
    symbols: np.ndarray  # the symbols that followed it
    counts: np.ndarray  # how often each did
    total: float


def _contexts(sequences: list[np.ndarray], length: int) -> dict[tuple, _Context]:
    counts: dict[tuple, dict[int, int]] = {}
    for sequence in sequences:
        values = sequence.tolist()
        for t in range(length, len(values)):
            followers = counts.setdefault(tuple(values[t - length : t]), {})
            followers[values[t]] = followers.get(values[t], 0) + 1
    table = {}
    for context, followers in counts.items():
        symbols = np.fromiter(followers.keys(), np.int64, len(followers))
        tally = np.fromiter(followers.values(), np.float64, len(followers))
        table[context] = _Context(symbols, tally, float(tally.sum()))
    return table


class NGram:
    """An interpolated n-gram of ``order`` (1: the unigram) over symbols ``0 .. len(base) - 1``."""

    def __init__(self, sequences: list[np.ndarray], order: int, base: np.ndarray, strength: float = 1.0):
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        self.order, self.strength = int(order), float(strength)
        self.base = np.asarray(base, np.float64)
        sequences = [np.asarray(sequence, np.int64) for sequence in sequences]
        self._tables = [_contexts(sequences, length) for length in range(order)]

    def distributions(self, sequence: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(P (positions, V), escape (positions,))`` for every position ``t >= start`` of
        ``sequence``, given the symbols before it in the sequence."""
        values = np.asarray(sequence, np.int64).tolist()
        positions = max(len(values) - start, 0)
        result = np.empty((positions, len(self.base)))
        escape = np.empty(positions)
        for row, t in enumerate(range(start, len(values))):
            p, factor = self.base.copy(), 1.0
            for length in range(min(self.order - 1, t) + 1):
                context = self._tables[length].get(tuple(values[t - length : t]))
                if context is None:
                    break
                weight = self.strength * len(context.symbols)
                p *= weight
                p[context.symbols] += context.counts
                p /= context.total + weight
                factor *= weight / (context.total + weight)
            result[row], escape[row] = p, factor
        return result, escape

    def _chains(self, sequence: np.ndarray, start: int) -> list[tuple[float, list[tuple[float, float, float]]]]:
        """Per position ``t >= start`` with a symbol in the base: its base probability and
        ``(count of the symbol, total, types)`` of every context found, shortest first (what
        ``nll`` needs, whatever the strength)."""
        values = np.asarray(sequence, np.int64).tolist()
        chains = []
        for t in range(start, len(values)):
            if values[t] < 0:
                continue
            chain = []
            for length in range(min(self.order - 1, t) + 1):
                context = self._tables[length].get(tuple(values[t - length : t]))
                if context is None:
                    break
                hit = np.flatnonzero(context.symbols == values[t])
                chain.append((float(context.counts[hit[0]]) if len(hit) else 0.0, context.total,
                              float(len(context.symbols))))
            chains.append((self.base[values[t]], chain))
        return chains

    def _nll_of_chains(self, chains) -> float:
        total = 0.0
        for p, chain in chains:
            for count, context_total, types in chain:
                weight = self.strength * types
                p = (count + weight * p) / (context_total + weight)
            total -= np.log(max(p, 1e-12))
        return total / max(len(chains), 1)

    def nll(self, sequences: list[np.ndarray], start: int = 0) -> float:
        """Mean ``-log P`` of the symbols at positions ``>= start``; negative symbols (outside
        the base) are skipped."""
        return self._nll_of_chains([link for sequence in sequences for link in self._chains(sequence, start)])

    @classmethod
    def tune(cls, training: list[np.ndarray], validation: list[np.ndarray], order: int, base: np.ndarray,
             start: int = 0, strengths: tuple[float, ...] = STRENGTHS) -> NGram:
        """The model of ``order`` whose ``strength`` gives the lowest NLL on ``validation``
        (Witten-Bell, strength 1, without validation sequences)."""
        model = cls(training, order, base)
        if not validation:
            return model
        chains = [link for sequence in validation for link in model._chains(sequence, start)]
        scores = {}
        for strength in strengths:
            model.strength = strength
            scores[strength] = model._nll_of_chains(chains)
        model.strength = min(scores, key=scores.get)
        return model
