"""Residue geometry shared by the protein tasks: representative atoms, distograms, contacts and their precision.

Conventions (CASP and trRosetta, so our numbers compare with the published ones):
- a residue's position for distances is its Cβ; glycine, which has none, uses its Cα; a non-glycine residue
  whose Cβ is unobserved gets a *virtual* Cβ placed from N, Cα and C with trRosetta's ideal constants;
- a contact is a Cβ-Cβ distance below 8 Å; pairs are short (6 <= |i-j| < 12), medium (12-23) or long
  range (>= 24), and a predictor is scored by the precision of its top L/5, L/2 or L pairs in a range,
  L the chain length (pairs with an unobserved residue are never counted, neither as hits nor as pairs);
- the distogram has 36 bins of 0.5 Å from 2 to 20 Å plus bin 0 for "beyond 20 Å" (trRosetta's layout).
Plain numpy: these run in data preparation and evaluation, where torch is not needed.
"""

from __future__ import annotations

import numpy as np

CONTACT_ANGSTROM = 8.0  # CASP's Cβ-Cβ contact threshold
DISTOGRAM_EDGES = np.linspace(2.0, 20.0, 37)  # 36 bins of 0.5 Å; below 2 Å falls in the first bin
N_DISTOGRAM_BINS = len(DISTOGRAM_EDGES)  # + bin 0: beyond 20 Å (no contact, not informative)
RANGES = {"short": (6, 12), "medium": (12, 24), "long": (24, None)}  # |i - j|, CASP
TOPS = {"L/5": 5, "L/2": 2, "L": 1}  # top L/k pairs

# trRosetta's virtual Cβ (Yang et al. 2020, PNAS): Cβ = -0.58273431 a + 0.56802827 b - 0.54067466 c + Cα
_VCB = (-0.58273431, 0.56802827, -0.54067466)


def virtual_cb(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Ideal Cβ positions (..., 3) from backbone N, Cα, C (..., 3)."""
    b = ca - n
    c_ = c - ca
    a = np.cross(b, c_)
    return _VCB[0] * a + _VCB[1] * b + _VCB[2] * c_ + ca


def representative_atoms(coords: np.ndarray, sequence: str) -> np.ndarray:
    """(L, 3) positions for distances: the observed Cβ, else a virtual Cβ, Cα for glycine; NaN if no Cα.

    `coords` is (L, 4, 3) in the order N, Cα, C, Cβ with NaN for a missing atom (structure.Chain.coords).
    """
    n, ca, c, cb = (coords[:, i] for i in range(4))
    out = np.where(np.isnan(cb).any(axis=1, keepdims=True), virtual_cb(n, ca, c), cb)
    glycine = np.array([aa == "G" for aa in sequence])
    out[glycine] = ca[glycine]
    # no N or C: the virtual Cβ is NaN; Cα is the best remaining estimate (1.5 Å off)
    fallback = np.isnan(out).any(axis=1)
    out[fallback] = ca[fallback]
    return out.astype(np.float32)


def distances(points: np.ndarray) -> np.ndarray:
    """(L, L) Euclidean distances; NaN rows/columns where a point is unknown."""
    diff = points[:, None, :] - points[None, :, :]
    return np.sqrt((diff**2).sum(-1)).astype(np.float32)


def distogram_labels(dist: np.ndarray) -> np.ndarray:
    """(L, L) int64 bin per pair: 0 beyond 20 Å, 1..36 from 2 to 20 Å; -1 where a distance is unknown."""
    labels = np.digitize(dist, DISTOGRAM_EDGES[1:-1]) + 1  # 1..36 inside [2, 20)
    labels[dist >= DISTOGRAM_EDGES[-1]] = 0
    labels[np.isnan(dist)] = -1
    return labels.astype(np.int64)


def contact_probability(distogram_probs: np.ndarray) -> np.ndarray:
    """P(d < 8 Å) from (L, L, bins) distogram probabilities: the mass of the bins below the threshold."""
    upper = DISTOGRAM_EDGES[1:]  # bin k (1..36) spans [edge k-1, edge k)
    below = np.concatenate([[False], upper <= CONTACT_ANGSTROM])
    return distogram_probs[..., below].sum(-1)


def range_mask(length: int, name: str) -> np.ndarray:
    """(L, L) upper-triangle mask of the pairs in a sequence-separation range."""
    lo, hi = RANGES[name]
    sep = np.arange(length)[None, :] - np.arange(length)[:, None]  # j - i: only i < j counts
    mask = sep >= lo
    if hi is not None:
        mask &= sep < hi
    return mask


def top_precision(scores: np.ndarray, dist: np.ndarray, name: str, k: int) -> float | None:
    """Precision of the top L/k scored pairs of range `name` whose true distance is known; None if no pair."""
    length = len(dist)
    mask = range_mask(length, name) & ~np.isnan(dist)
    if not mask.any():
        return None
    n_top = max(1, length // k)
    pair_scores = scores[mask]
    truth = dist[mask] < CONTACT_ANGSTROM
    order = np.argsort(-pair_scores, kind="stable")[:n_top]
    return float(truth[order].mean())


def precision_table(scores: np.ndarray, dist: np.ndarray) -> dict[str, float | None]:
    """{"long/L/5": p, ...} for every range and top: the CASP contact metrics of one chain."""
    return {f"{r}/{t}": top_precision(scores, dist, r, k) for r in RANGES for t, k in TOPS.items()}


def separation_baseline(length: int) -> np.ndarray:
    """Scores that rank pairs by closeness in sequence: within a range, nearer pairs are likelier contacts."""
    sep = np.abs(np.subtract.outer(np.arange(length), np.arange(length))).astype(np.float32)
    return -sep


def random_baseline(length: int, seed: int) -> np.ndarray:
    """Uniform random scores: its expected precision is the range's contact density."""
    rng = np.random.default_rng(seed)
    scores = rng.random((length, length), dtype=np.float32)
    return np.triu(scores, 1) + np.triu(scores, 1).T


def mean_table(tables: list[dict[str, float | None]]) -> dict[str, float]:
    """Per metric, the mean over chains that have pairs in that range (a chain without long pairs is skipped)."""
    keys = tables[0].keys() if tables else []
    out = {}
    for key in keys:
        values = [t[key] for t in tables if t[key] is not None]
        if values:
            out[key] = float(np.mean(values))
    return out
