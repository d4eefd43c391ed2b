"""Helpers the distributed tests share: the shrunk energy demo and how to run its stages in a subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# the demo profile, shrunk so that one training epoch is a second or two on 2 CPU cores
ENERGY_DEMO = [
    "profile=demo",
    "energy.data.demo_rows=1200",  # ~800 training windows: 13 batches of 64 per epoch
    "energy.model.d_model=8",
    "energy.model.d_ff=32",
    "energy.model.n_layers=1",
]


def cli_env(work: Path) -> dict[str, str]:
    """The environment of a `python -m pipelines` subprocess working in `work` (its own MLflow store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
            "PYTHONPATH": str(REPO),
            # one thread per process: the tests run several trainers on 2 cores, oversubscription only slows them
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "SCIFOLIO_DEBUG": "1",  # a failing stage shows its traceback in the test's output
        }
    )
    return env


def pipeline(work: Path, stage: str, *extra: str) -> list[str]:
    """`python -m pipelines energy <stage>` on the shrunk demo, with its data in `work`/data."""
    sets = [a for o in ENERGY_DEMO for a in ("--set", o)]
    return [sys.executable, "-m", "pipelines", "energy", stage, "--data-dir", str(work / "data"), *sets, *extra]
