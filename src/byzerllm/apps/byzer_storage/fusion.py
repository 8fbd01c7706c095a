"""Fusion of the ranked result lists of a hybrid search (k-NN + BM25) into one ranking.

- ``rrf``: reciprocal rank fusion. Cormack, Clarke and Buettcher, "Reciprocal Rank Fusion
  outperforms Condorcet and individual Rank Learning Methods", SIGIR 2009:
  ``score(d) = sum over lists of 1 / (k + rank(d))`` with 1-based ranks and ``k = 60``, the
  constant the paper found robust. It uses ranks only.
- ``convex``: a convex combination of normalised scores. Bruch, Gai and Ingber, "An Analysis of
  Fusion Functions for Hybrid Retrieval", ACM TOIS 2023 (doi:10.1145/3596512), found it better
  than RRF in and out of domain (its one weight tuned on a few queries), and RRF sensitive to its
  parameter. It uses the scores themselves, not only ranks, so a row far ahead in one list stays
  far ahead. Here with equal weights (no tuning) and min-max normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

RRF_K = 60


def rrf(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """Fuse ranked lists of ids (best first) into ``[(id, score)]``, best first. Ties keep the
    order in which ids first appear (list by list), so the result is deterministic."""
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def convex(results: Sequence[Sequence[tuple[Hashable, float]]]) -> list[tuple[Hashable, float]]:
    """Fuse scored lists ``[(id, score)]`` (one per method, higher score is better) into
    ``[(id, fused score)]``, best first.

    Each list's scores are min-max normalised to [0, 1] over that list, then summed with equal
    weights: a fused score lies in [0, number of lists]. An id missing from a list gets 0 for it;
    a list whose scores are all equal gives each of its ids 1.0; an empty list adds nothing.
    Ties keep the order in which ids first appear (list by list). The fusion is Bruch et al. 2023,
    "An Analysis of Fusion Functions for Hybrid Retrieval": a convex combination of normalised
    scores (weights 1/2 each, scaled by 2 here). Raises ``ValueError`` for a score that is not a
    finite number.
    """
    fused: dict[Hashable, float] = {}
    for scored in results:
        if not scored:
            continue
        values = [float(s) for _, s in scored]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("convex fusion needs finite scores")
        low, high = min(values), max(values)
        for (item, _), v in zip(scored, values, strict=True):
            norm = (v - low) / (high - low) if high > low else 1.0
            fused[item] = fused.get(item, 0.0) + norm
    return sorted(fused.items(), key=lambda kv: -kv[1])
