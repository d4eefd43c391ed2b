"""`train --resume` after a SIGKILL mid-epoch reproduces the uninterrupted run: same weights, same metrics.

Two `python -m pipelines energy train` runs start together on the shrunk demo, each in its own copy of the
prepared folder: the reference runs to the end; the other is frozen (SIGSTOP) as soon as its resume
checkpoint, data/energy/checkpoints/last.ckpt, is one written in the middle of an epoch after the
first (so the restored early-stopping, best-checkpoint and history state matter too), then SIGKILLed.
`train --resume` finishes it; everything it writes must equal the reference exactly: CPU training is
deterministic (train.deterministic), and the resume restores the RNG and the epoch's shuffle position
(components/train.py), so there is no tolerance to grant.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pandas as pd
import pytest

from tests.distributed.helpers import REPO, cli_env, pipeline

EVERY_N_STEPS = 3  # a checkpoint every 3 of the 13 steps of an epoch: most of them mid-epoch
TRAIN = ["--set", f"energy.train.checkpoint_every_n_steps={EVERY_N_STEPS}"]


def _checkpoint_position(path) -> tuple[int, int, int] | None:
    """(epoch, batches of it trained, batches per epoch) of a resume checkpoint; None if it cannot be read."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # replaced between the check and the read: read the next one
        return None
    loader = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]  # ResumableDataLoader.state_dict()
    return ckpt["epoch"], loader["consumed"], loader["batches"]


def _kill_with_a_mid_epoch_checkpoint(proc, last, deadline: float) -> tuple[int, int]:
    """Freeze `proc` whenever a new last.ckpt appears; SIGKILL it once that checkpoint is mid-epoch, epoch >= 1."""
    seen = None
    while time.monotonic() < deadline and proc.poll() is None:
        stamp = last.stat().st_mtime_ns if last.exists() else None
        if stamp is not None and stamp != seen:
            proc.send_signal(signal.SIGSTOP)  # nothing more is written while we read it
            seen = last.stat().st_mtime_ns
            position = _checkpoint_position(last)
            if position is not None:
                epoch, consumed, batches = position
                if epoch >= 1 and 0 < consumed < batches:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                    return epoch, consumed
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    out, err = proc.communicate(timeout=30) if proc.poll() is not None else ("", "(still running)")
    pytest.fail(f"no mid-epoch checkpoint of epoch >= 1 appeared before the run ended:\n{out[-2000:]}\n{err[-3000:]}")


def _weights(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_resume_after_sigkill_mid_epoch_equals_the_uninterrupted_run(energy_copy):
    import mlflow
    import torch

    started = time.monotonic()
    reference_dir, crashed_dir = energy_copy("reference"), energy_copy("crashed")
    spawn = dict(cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # both at once: the reference's numbers do not depend on what else runs on the machine
    reference = subprocess.Popen(pipeline(reference_dir, "train", *TRAIN), env=cli_env(reference_dir), **spawn)
    crashed = subprocess.Popen(pipeline(crashed_dir, "train", *TRAIN), env=cli_env(crashed_dir), **spawn)
    unfinished = crashed_dir / "data/energy/checkpoints"
    try:
        epoch, consumed = _kill_with_a_mid_epoch_checkpoint(crashed, unfinished / "last.ckpt", time.monotonic() + 90)
        out, err = reference.communicate(timeout=120)
    finally:
        for p in (reference, crashed):
            if p.poll() is None:
                p.kill()
    assert reference.returncode == 0, f"reference run failed:\n{out[-2000:]}\n{err[-3000:]}"
    assert not (crashed_dir / "data/energy/model").exists()  # the killed stage left no output
    crashed_run = json.loads((unfinished / "resume.json").read_text())["run_id"]

    resumed = subprocess.run(
        pipeline(crashed_dir, "train", "--resume", *TRAIN), env=cli_env(crashed_dir), timeout=120, **spawn
    )
    assert resumed.returncode == 0, f"train --resume failed:\n{resumed.stdout[-2000:]}\n{resumed.stderr[-3000:]}"
    assert "not resumable" not in resumed.stderr  # Lightning's warning for a mid-epoch restart from a fresh shuffle

    expected = json.loads((reference_dir / "data/energy/model/run.json").read_text())
    got = json.loads((crashed_dir / "data/energy/model/run.json").read_text())
    reference_history = pd.read_csv(reference_dir / "data/energy/model/history.csv")
    resumed_history = pd.read_csv(crashed_dir / "data/energy/model/history.csv")
    w_ref = _weights(reference_dir / "data/energy/model/checkpoints/best.ckpt")
    w_res = _weights(crashed_dir / "data/energy/model/checkpoints/best.ckpt")
    max_diff = max(float((w_ref[k] - w_res[k]).abs().max()) for k in w_ref)
    print(
        f"resume test: killed in epoch {epoch} after {consumed} batches of it; best {expected['select_metric']} "
        f"reference {expected['best_score']!r} resumed {got['best_score']!r}; epochs {expected['epochs']} / "
        f"{got['epochs']}; max |weight diff| {max_diff}; {time.monotonic() - started:.1f} s"
    )
    # exact: same arithmetic in the same order (tolerance 0)
    assert got["best_score"] == expected["best_score"]
    assert got["epochs"] == expected["epochs"]
    pd.testing.assert_frame_equal(resumed_history, reference_history, check_exact=True)
    assert w_ref.keys() == w_res.keys()
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref), f"weights differ (max |diff| {max_diff})"

    # the same MLflow run, continued and finished; nothing left to resume
    assert got["run_id"] == crashed_run
    mlflow.set_tracking_uri(f"sqlite:///{crashed_dir}/mlflow.db")
    run = mlflow.MlflowClient().get_run(crashed_run)
    assert run.info.status == "FINISHED" and run.data.tags.get("scifolio.resumed") == "true"
    assert not unfinished.exists()
