"""In-memory k-NN over one vector field: exact below ``ivf_min_rows`` rows, IVF above.

A query against n stored 384-dim float32 vectors reads n x 1.5 KB: at 100k rows that is 154 MB
and ~9 ms on this class of machine (memory bandwidth), or ~80 ms in sqlite-vec's vec0 scan (built
without SIMD here). Above ``ivf_min_rows`` an inverted-file index (IVF, as in FAISS's IndexIVFFlat
and pgvector's ivfflat) is used instead: k-means splits the vectors into ``nlist = 2 sqrt(n)`` lists,
a query scans the ``nprobe`` lists whose centroids are nearest, and scores those vectors exactly.
That is approximate: recall@10 against the exact ranking is measured by ``bench/storage.py`` with
held-out queries (target >= 0.95); raise ``nprobe`` for more recall, or ``ivf_min_rows`` to stay exact.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

IVF_MIN_ROWS = 50_000
NLIST_PER_SQRT_N = 2  # nlist = 2 sqrt(n): 632 lists at 100k (FAISS suggests 4-16 sqrt(n))
PROBE_FRACTION = 0.12  # lists scanned per query: recall@10 0.988 at 100k, bench/storage.py's held-out queries
KMEANS_ITERS = 8
SAMPLE_PER_LIST = 25  # k-means trains on at most nlist x 25 vectors


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager:
    """Run BLAS on one thread: a query's matrix-vector products are small, and OpenBLAS's threads
    spin-wait for each other, which on a busy machine turned a 0.5 ms product into 50 ms."""
    return _blas_controller().limit(limits=1, user_api="blas")


class VectorIndex:
    """``rids`` (n,) int64 row keys and ``mat`` (n, dim) float32 vectors (for cosine, already
    unit length). ``search`` returns ``(rids, scores)`` best first, scores as the engine's
    ``_score`` (cosine similarity, or -L2 distance)."""

    def __init__(
        self,
        rids: np.ndarray,
        mat: np.ndarray,
        metric: str,
        ivf_min_rows: int = IVF_MIN_ROWS,
        nprobe: int | None = None,
        seed: int = 0,
    ) -> None:
        self.metric = metric
        self.rids, self.mat = rids, mat
        self.sq = np.einsum("ij,ij->i", mat, mat)
        self.ivf_min_rows = max(ivf_min_rows, 1)
        self.alive = np.ones(len(rids), dtype=bool)
        self.n_dead = 0
        self.extra_rids = np.zeros(0, dtype=np.int64)
        self.extra_mat = np.zeros((0, mat.shape[1] if mat.ndim == 2 else 1), dtype=np.float32)
        self.extra_sq = np.zeros(0, dtype=np.float32)
        self.centroids: np.ndarray | None = None
        if len(rids) >= max(ivf_min_rows, 1):
            self._build_ivf(seed)
            self.nprobe = nprobe or max(8, math.ceil((len(self.offsets) - 1) * PROBE_FRACTION))

    # --- scoring -------------------------------------------------------------------------------
    def _scores(self, mat: np.ndarray, sq: np.ndarray, q: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            return mat @ q
        return -np.sqrt(np.maximum(sq - 2 * (mat @ q) + float(q @ q), 0))

    def _nearest_lists(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for each row of ``x`` (chunked to bound memory)."""
        half = 0.5 * np.einsum("ij,ij->i", c, c)
        out = np.empty(len(x), dtype=np.int64)
        for s in range(0, len(x), 16384):
            out[s : s + 16384] = np.argmax(x[s : s + 16384] @ c.T - (0 if self.metric == "cosine" else half), axis=1)
        return out

    def _build_ivf(self, seed: int) -> None:
        n = len(self.rids)
        nlist = max(1, int(NLIST_PER_SQRT_N * math.sqrt(n)))
        rng = np.random.default_rng(seed)
        sample = self.mat[rng.choice(n, size=min(n, nlist * SAMPLE_PER_LIST), replace=False)]
        c = sample[rng.choice(len(sample), size=nlist, replace=False)].copy()
        for _ in range(KMEANS_ITERS):
            assign = self._nearest_lists(sample, c)
            order = np.argsort(assign, kind="stable")
            counts = np.bincount(assign, minlength=nlist)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            padded = np.vstack([sample[order], np.zeros((1, sample.shape[1]), dtype=sample.dtype)])
            sums = np.add.reduceat(padded, starts, axis=0)  # empty lists are masked below
            c = np.where((counts == 0)[:, None], c, sums / np.maximum(counts, 1)[:, None])
            if self.metric == "cosine":  # spherical k-means: centroids on the unit sphere
                c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-30)
        assign = self._nearest_lists(self.mat, c)
        order = np.argsort(assign, kind="stable")
        # rows sorted by list, so a list is one contiguous slice
        self.rids, self.mat, self.sq = self.rids[order], self.mat[order], self.sq[order]
        self.alive = self.alive[order]
        self.offsets = np.searchsorted(assign[order], np.arange(nlist + 1))
        self.centroids = c.astype(np.float32)

    # --- search --------------------------------------------------------------------------------
    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows for query ``q`` (cosine: ``q`` unit length). With ``allowed`` (row
        keys passing a filter) the search is exact over those rows only."""
        with one_blas_thread():
            return self._search(q, k, allowed)

    def _search(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            scores = np.where(np.isin(self.rids, allowed), self._scores(self.mat, self.sq, q), -np.inf)
            rids, alive = self.rids, self.alive
        elif self.centroids is None:
            scores, rids, alive = self._scores(self.mat, self.sq, q), self.rids, self.alive
        else:
            cs = self.centroids @ q
            if self.metric != "cosine":
                cs = cs - 0.5 * np.einsum("ij,ij->i", self.centroids, self.centroids)
            probe = np.argpartition(-cs, min(self.nprobe, len(cs)) - 1)[: self.nprobe]
            parts = [slice(self.offsets[p], self.offsets[p + 1]) for p in probe]
            scores = np.concatenate([self._scores(self.mat[s], self.sq[s], q) for s in parts])
            rids = np.concatenate([self.rids[s] for s in parts])
            alive = np.concatenate([self.alive[s] for s in parts])
        if self.n_dead:
            scores = np.where(alive, scores, -np.inf)
        if len(self.extra_rids):  # rows written since the index was built: scanned exactly
            extra = self._scores(self.extra_mat, self.extra_sq, q)
            if allowed is not None:
                extra = np.where(np.isin(self.extra_rids, allowed), extra, -np.inf)
            scores, rids = np.concatenate([scores, extra]), np.concatenate([rids, self.extra_rids])
        k = min(k, len(rids))
        if k <= 0:
            return rids[:0], scores[:0]
        top = np.argpartition(-scores, k - 1)[:k] if k < len(rids) else np.arange(len(rids))
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[scores[top] != -np.inf]
        return rids[top], scores[top]

    # --- writes --------------------------------------------------------------------------------
    def update(self, removed: np.ndarray, added_rids: np.ndarray, added: np.ndarray) -> None:
        """Apply a committed write: rows ``removed`` (row keys) are hidden, ``added`` vectors
        (float32, ``len(added_rids)`` x dim) join a small segment that every query scans exactly.
        An upsert of an existing row is both. ``stale`` says when a rebuild pays off."""
        if len(removed):
            dead = np.isin(self.rids, removed) & self.alive
            self.n_dead += int(dead.sum())
            self.alive &= ~dead
            keep = ~np.isin(self.extra_rids, removed)
            self.extra_rids, self.extra_mat, self.extra_sq = (
                self.extra_rids[keep],
                self.extra_mat[keep],
                self.extra_sq[keep],
            )
        if len(added_rids):
            added = np.asarray(added, dtype=np.float32).reshape(len(added_rids), -1)
            if self.metric == "cosine":
                added = added / np.maximum(np.linalg.norm(added, axis=1, keepdims=True), 1e-30)
            self.extra_rids = np.concatenate([self.extra_rids, added_rids.astype(np.int64)])
            self.extra_mat = np.vstack([self.extra_mat, added]) if len(self.extra_mat) else added
            self.extra_sq = np.concatenate([self.extra_sq, np.einsum("ij,ij->i", added, added)])

    @property
    def stale(self) -> bool:
        """True when the write segment or the hidden rows passed 10% of the index (then a rebuild
        is cheaper than scanning them), or the written rows crossed the IVF threshold."""
        n = max(len(self.rids), 1)
        limit = max(1000, n // 10)
        crosses = self.centroids is None and len(self.rids) - self.n_dead + len(self.extra_rids) >= self.ivf_min_rows
        return len(self.extra_rids) > limit or self.n_dead > limit or crosses
