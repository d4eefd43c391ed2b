"""Evaluation outputs: metrics JSON for `dvc metrics`, CSV tables for `dvc plots`, figures to MLflow.

The project computes the numbers (components.project.Evaluation); this module only writes them
where DVC and MLflow expect them, atomically, so a failed evaluation never leaves a metrics file
that looks complete.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from components.io import atomic_write_text
from components.project import Evaluation


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> dict[str, Path]:
    """out_dir/metrics.json, out_dir/plots/<name>.csv, out_dir/figures/<name>.png (and the files beside them)."""
    bad = {k: v for k, v in evaluation.metrics.items() if not math.isfinite(v)}
    if bad:
        raise ValueError(f"evaluation produced non-finite metrics: {bad}")
    written = {"metrics": out_dir / "metrics.json"}
    for name, table in evaluation.tables.items():
        path = out_dir / "plots" / f"{name}.csv"
        atomic_write_text(path, table.to_csv(index=False))
        written[f"plots/{name}"] = path
    for name, figure in evaluation.figures.items():
        path = out_dir / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        written[f"figures/{name}"] = path
    for name, text in evaluation.files.items():
        path = out_dir / "figures" / name
        atomic_write_text(path, text)
        written[f"files/{name}"] = path
    # metrics last: its presence means the evaluation finished
    atomic_write_text(written["metrics"], json.dumps(_nest(evaluation.metrics), indent=2, sort_keys=True) + "\n")
    return written


def log_evaluation(evaluation: Evaluation, written: dict[str, Path]) -> None:
    """Log metrics, figures and plot tables to the active MLflow run."""
    import mlflow

    mlflow.log_metrics(evaluation.metrics)
    for name, figure in evaluation.figures.items():
        mlflow.log_figure(figure, f"figures/{name}.png")
    for key, path in written.items():
        if key.startswith("plots/"):
            mlflow.log_artifact(str(path), "plots")
        elif key.startswith("files/"):
            mlflow.log_artifact(str(path), "files")
    mlflow.log_artifact(str(written["metrics"]))


def _nest(flat: dict[str, float]) -> dict:
    """{"test/mse": 1} -> {"test": {"mse": 1}}: DVC shows nested keys as test.mse."""
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def read_metrics(path: Path) -> dict[str, float]:
    """metrics.json -> the flat {"test/mse": ...} form."""
    flat: dict[str, float] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}/{key}" if prefix else key
            if isinstance(value, dict):
                walk(value, name)
            else:
                flat[name] = value

    walk(json.loads(Path(path).read_text()), "")
    return flat


def loss_figure(history):
    """Every loss column of the epoch history (train/loss, val/loss, ...) against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for column in [c for c in history.columns if c.endswith("/loss")]:
        ax.plot(history["epoch"], history[column], marker="o", label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
