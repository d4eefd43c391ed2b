"""`mlflow run . -e energy --env-manager local` runs the whole chain (shrunk to one trial/epoch)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SHRINK = "energy.tune.n_trials=1 energy.tune.max_epochs=1 energy.train.max_epochs=1 energy.data.demo_rows=1200"


def test_mlflow_run_energy_entry_point(repo_root, tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(
        repo_root,
        work,
        ignore=shutil.ignore_patterns(".venv", "data", "mlruns", "mlflow.db", "__pycache__", ".git", "benchmarks"),
    )
    (work / "data").mkdir()
    # an experiment id another test's fixture left in os.environ would clash with --experiment-name
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    }
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db", PYTHONPATH=str(work))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [
            "mlflow",
            "run",
            ".",
            "-e",
            "energy",
            "--env-manager",
            "local",
            "--experiment-name",
            "energy-demo",  # the demo profile's experiment: the launcher run sits beside the stage runs
            "-P",
            f"overrides={SHRINK}",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "succeeded" in proc.stderr

    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert str(client.get_model_version_by_alias("energy-demo", "champion").version) == "1"
    assert client.search_registered_models("name = 'energy'") == []  # the demo never registers the real name
    experiment = client.get_experiment_by_name("energy-demo")
    launcher = [r for r in client.search_runs([experiment.experiment_id]) if "scifolio.gate" in r.data.tags]
    assert len(launcher) == 1 and "no champion yet" in launcher[0].data.tags["scifolio.gate"]
    train = [r for r in client.search_runs([experiment.experiment_id], "tags.`scifolio.stage` = 'train'")]
    assert len(train) == 1 and train[0].data.params["energy.train.max_epochs"] == "1"
