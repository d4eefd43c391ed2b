"""What the monitor watches for protein, and the streams the replay tool sends.

One item is one sequence of a request. Its monitored features:
- the sequence as it arrived: its length and composition (hydrophobic, charged, polar, glycine + proline
  shares: a new protein family or a construct with tags and linkers shows here before any contact moves);
- the encoder's mean residue embedding, reduced to EMBEDDING_DIMS by a fixed seeded Gaussian random
  projection (the same on both sides; Rabanser et al. 2019), compared by Evidently's domain classifier;
- the answer: the predicted long-range contact density (expected contacts per residue).
Sequences are independent items: K-S per column with a Bonferroni correction.

Reference: the validation chains. Streams (`replay_requests`):
- unshifted: the test chains, as they are;
- fragments: the N-terminal halves of the test chains (truncated constructs: shorter, and their contacts
  are no longer those of a folded domain).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.monitor import FeatureSpec, even_sample

EMBEDDING_DIMS = 16  # the random projection's output width
STREAMS = ("unshifted", "fragments")
GROUPS = {"hydrophobic": "AILMFVWC", "charged": "DEKR", "polar": "STNQHY", "gly_pro": "GP"}
SEQUENCE_STATS = ("length", *(f"{g}_share" for g in GROUPS))


def spec(python_model) -> FeatureSpec:
    return FeatureSpec(
        numerical=list(SEQUENCE_STATS),
        categorical=[],
        outputs=["contact_density"],
        embeddings={"encoder": [f"emb_{i}" for i in range(EMBEDDING_DIMS)]},
    )


def composition(sequence: str) -> dict[str, float]:
    return {
        "length": len(sequence),
        **{f"{g}_share": sum(aa in letters for aa in sequence) / len(sequence) for g, letters in GROUPS.items()},
    }


def features(python_model, request: pd.DataFrame, answer: pd.DataFrame) -> pd.DataFrame:
    """One row per sequence: what arrived, what the encoder made of it, what the model answered."""
    from components.payload import check_columns

    sequences = check_columns(request, python_model.columns)["sequence"]
    table = pd.DataFrame([composition(s) for s in sequences])
    table[[f"emb_{i}" for i in range(EMBEDDING_DIMS)]] = np.stack([embedding(python_model, s) for s in sequences])
    table["contact_density"] = answer["contact_density"].to_numpy(dtype=np.float64)
    return table


def embedding(python_model, sequence: str) -> np.ndarray:
    """The encoder's mean residue state, projected to EMBEDDING_DIMS."""
    import torch

    from pipelines.protein.graph import sequence_graph

    data = sequence_graph(sequence, python_model.config["window"])
    with torch.inference_mode():
        h = python_model.net.encode(data)[0].mean(0).numpy()  # the last pass's states (two with spatial edges)
    projection = np.random.default_rng(0).normal(0, 1 / np.sqrt(EMBEDDING_DIMS), (h.shape[0], EMBEDDING_DIMS))
    return h @ projection


def _sequences(paths, split: str) -> list[str]:
    from pipelines.protein.dataset import ChainGraphs

    chains = ChainGraphs(paths.prepared / f"{split}.pt")
    return [chains[i].sequence for i in range(len(chains))]


def _requests(sequences: list[str]) -> list[pd.DataFrame]:
    return [pd.DataFrame({"sequence": [s]}) for s in sequences]


def reference_requests(cfg, paths, limit: int) -> list[pd.DataFrame]:
    return _requests(even_sample(_sequences(paths, "val"), limit))


def replay_requests(cfg, paths, stream: str, n: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """Up to `n` one-sequence requests of a stream, drawn at random without repeats (fewer when fewer exist)."""
    test = _sequences(paths, "test")
    if stream == "unshifted":
        sequences = test
    elif stream == "fragments":
        sequences = [s[: len(s) // 2] for s in test if len(s) // 2 >= cfg.project.data.min_length]
    else:
        raise ValueError(f"protein stream {stream!r} is not one of {STREAMS}")
    if not sequences:
        raise ValueError(f"protein stream {stream!r}: no sequence (the test split has no chain long enough)")
    chosen = rng.choice(len(sequences), size=min(n, len(sequences)), replace=False)
    return _requests([sequences[i] for i in chosen])
