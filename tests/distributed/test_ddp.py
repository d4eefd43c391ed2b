"""Lightning DDP on 2 CPU processes (gloo) against one process with the same global batch.

`python -m pipelines energy train --set energy.train.devices=2 --set energy.train.batch_size=32` makes
Lightning's launcher re-run the command as rank 1 (components/train.is_ddp_worker); each rank trains on
its DistributedSampler shard, gradients are averaged, so the global batch is 2 x 32 = 64, the same as one
process with batch_size=64. The two runs see the same windows per step on average but not the same
batches (DistributedSampler shuffles differently from RandomSampler), so they agree within a tolerance,
not exactly. And only rank 0 logs: one MLflow train run, one model folder.
"""

from __future__ import annotations

import json
import subprocess

import mlflow

from tests.distributed.helpers import REPO, cli_env, pipeline

TOLERANCE = 0.05  # relative difference of the best val/loss; measured 0.3 % on the shrunk demo (2 epochs)
EPOCHS = ["--set", "energy.train.max_epochs=2", "--set", "energy.train.patience=5"]


def train(work, *sets: str) -> dict:
    command = pipeline(work, "train", *EPOCHS, *sets)
    proc = subprocess.run(command, cwd=REPO, env=cli_env(work), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads((work / "data/energy/model/run.json").read_text())


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(energy_copy):
    single_dir, ddp_dir = energy_copy("single"), energy_copy("ddp")
    single = train(single_dir, "--set", "energy.train.batch_size=64")
    ddp = train(ddp_dir, "--set", "energy.train.batch_size=32", "--set", "energy.train.devices=2")
    gap = abs(ddp["best_score"] - single["best_score"]) / single["best_score"]
    print(
        f"ddp test: best val/loss 1 process {single['best_score']:.5f}, 2 processes {ddp['best_score']:.5f}, gap {gap:.2%}"
    )
    assert (single["processes"], ddp["processes"]) == (1, 2)  # Lightning really ran two processes
    assert gap < TOLERANCE
    assert ddp["best_score"] != single["best_score"]  # two really different runs were compared

    # only rank 0 logged: one train run in the DDP store, with both epochs, and rank 1 wrote no run
    client = mlflow.MlflowClient(f"sqlite:///{ddp_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("energy-demo").experiment_id
    runs = client.search_runs([experiment], "tags.`scifolio.stage` = 'train'")
    assert [r.info.run_id for r in runs] == [ddp["run_id"]]
    history = client.get_metric_history(ddp["run_id"], "val/loss")
    assert len(history) == 2
    assert runs[0].data.params["energy.train.devices"] == "2"
