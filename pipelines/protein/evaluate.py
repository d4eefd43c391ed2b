"""Test metrics of contact prediction: CASP precision of the top L/5, L/2 and L pairs per range (short, medium,
long), mean over the test chains, beside two baselines (random scores; closeness in sequence), and contact
maps of the first test chains (true above the diagonal, predicted below)."""

from __future__ import annotations

import numpy as np

from components.project import Evaluation
from pipelines.protein import geometry


def metric_key(key: str) -> str:
    """geometry's "long/L/5" as a metric name: "long_L5"."""
    range_name, top = key.split("/", 1)
    return f"{range_name}_{top.replace('/', '')}"


def predict_probs(net, data) -> np.ndarray:
    """(L, L, bins) distogram probabilities of one chain (no gradient, net in eval mode)."""
    import torch

    with torch.no_grad():
        return torch.softmax(net(data), -1).numpy()


def chain_tables(net, chains, seed: int) -> list[dict]:
    """Per chain: name, length and the precision tables of the model and both baselines."""
    rows = []
    for i in range(len(chains)):
        data = chains[i]
        dist = geometry.distances(data.points.numpy())
        length = len(dist)
        scores = geometry.contact_probability(predict_probs(net, data))
        rows.append(
            {
                "name": data.name,
                "length": length,
                "model": geometry.precision_table(scores, dist),
                "separation": geometry.precision_table(geometry.separation_baseline(length), dist),
                "random": geometry.precision_table(geometry.random_baseline(length, seed + i), dist),
                "scores": scores,
                "dist": dist,
            }
        )
    return rows


def contact_map_figure(scores: np.ndarray, dist: np.ndarray, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    length = len(dist)
    picture = np.where(np.triu(np.ones((length, length), bool), 1), dist < geometry.CONTACT_ANGSTROM, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    image = ax.imshow(picture.astype(float), cmap="Greys", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("residue j (upper: true contacts < 8 Å)")
    ax.set_ylabel("residue i (lower: predicted P(contact))")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def fold_rows(net, chains, steps: int, lr: float, n: int, seed: int) -> list[dict]:
    """Fold the first `n` chains from their predicted distograms; TM-score, lDDT, Cα RMSD and RMSD per frame."""
    from pipelines.protein import folding

    rows = []
    for i in range(min(n, len(chains))):
        data = chains[i]
        native = data.backbone[:, 1].numpy()  # every stored residue has its Cα
        result = folding.fold(predict_probs(net, data), data.num_nodes, steps=steps, lr=lr, seed=seed)
        rows.append(
            {
                "name": data.name,
                "tm": folding.tm_score(result.coords, native),
                "lddt": folding.lddt(result.coords, native),
                "rmsd": folding.ca_rmsd(result.coords, native),
                "frames": [folding.ca_rmsd(frame, native) for frame in result.trajectory],
                "trajectory": result.trajectory,
                "sequence": data.sequence,
            }
        )
    return rows


def trajectory_figure(frames: list[float], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(range(len(frames)), frames, marker="o")
    ax.set_xlabel("saved frame of the minimisation")
    ax.set_ylabel("Cα RMSD to the native (Å)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def evaluate(net, datamodule, seed: int = 0, n_figures: int = 2, fold=None) -> Evaluation:
    import pandas as pd

    from pipelines.protein import folding

    rows = chain_tables(net.eval(), datamodule.items("test"), seed)
    metrics = {}
    for source, prefix in (
        ("model", "test"),
        ("separation", "baseline/separation/test"),
        ("random", "baseline/random/test"),
    ):
        for key, value in geometry.mean_table([r[source] for r in rows]).items():
            metrics[f"{prefix}/{metric_key(key)}"] = value
    per_chain = pd.DataFrame(
        [{"name": r["name"], "length": r["length"], **{metric_key(k): v for k, v in r["model"].items()}} for r in rows]
    )
    figures = {
        f"contacts_{r['name']}": contact_map_figure(r["scores"], r["dist"], f"{r['name']} (L={r['length']})")
        for r in rows[:n_figures]
    }
    tables, files = {"per_chain": per_chain}, {}
    if fold is not None and fold.chains:  # the 3D step: fold test chains from what the model predicted
        folded = fold_rows(net, datamodule.items("test"), fold.steps, fold.lr, fold.chains, seed)
        for key in ("tm", "lddt", "rmsd"):
            metrics[f"test/fold_{key}"] = float(np.mean([r[key] for r in folded]))
        first = folded[0]
        tables["fold_trajectory"] = pd.DataFrame({"frame": range(len(first["frames"])), "rmsd": first["frames"]})
        figures["fold_trajectory"] = trajectory_figure(first["frames"], f"folding {first['name']}")
        files[f"fold_trajectory_{first['name']}.pdb"] = folding.trajectory_text(first["trajectory"], first["sequence"])
    return Evaluation(metrics=metrics, tables=tables, figures=figures, files=files)
