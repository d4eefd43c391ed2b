"""The retraining loop: monitor -> (drift or schedule) -> retrain on current data -> gate -> record.

    python -m pipelines energy retrain             # on schedule: retrain now
    python -m pipelines energy retrain --if-drift  # only when the champion's traffic has drifted

Retraining is `dvc repro --force register@<project>`: DVC re-runs pull (the current data), validate,
prepare, tune, train, evaluate and register, and keeps dvc.lock true to what was built. The register
stage logs the new version as `challenger` and runs the promotion gate (components/register.py),
which moves `champion` only if the challenger beats it on the primary metric; a challenger whose
data failed validation never reaches the registry (dvc stops at validate). The gate holds a lock
from reading the champion to moving the alias, so two loops cannot both promote.

Every loop is an MLflow run (`retrain`) tagged with its trigger, the monitor run that triggered it and
the gate's decision, and writes monitoring/reports/<project>/retrain/<UTC time>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from components.evaluate import atomic_write_text
from components.monitor import REPORTS_DIR

log = logging.getLogger("scifolio.loop")


def retrain(
    project, cfg, paths, if_drift: bool, log_dir: Path | None = None, reports_dir: Path = REPORTS_DIR, dvc: str = "dvc"
) -> dict:
    from components import monitor

    started = dt.datetime.now(dt.UTC)
    record = {
        "project": project.name,
        "model": cfg.model_name,
        "started_at": started.isoformat(timespec="seconds"),
        "trigger": "drift" if if_drift else "schedule",
        "monitor": None,
    }
    if if_drift:
        check = monitor.check(project, cfg, log_dir=log_dir, reports_dir=reports_dir)
        record["monitor"] = {k: check.get(k) for k in ("version", "drift", "status", "reasons", "report_dir")}
        if check["status"] == "no_champion":
            record["trigger"] = "no champion"
        elif not check["drift"]:
            record.update(
                retrained=False,
                outcome="skipped",
                reason=f"no drift on champion v{check['version']}: "
                + ("; ".join(check["reasons"]) or "no column or embedding drifted"),
            )
            return finish(project, cfg, record, reports_dir)
    decision_file = paths.registry / "decision.json"
    before = decision_file.stat().st_mtime_ns if decision_file.exists() else None
    command = [dvc, "repro", "--force", f"register@{project.name}"]
    log.info("retraining %s: %s", project.name, " ".join(command))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
    }
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not decision_file.exists() or decision_file.stat().st_mtime_ns == before:
        tail = (proc.stderr or proc.stdout)[-2000:]
        record.update(
            retrained=False, outcome="failed", reason=f"`{' '.join(command)}` exited {proc.returncode}: {tail}"
        )
        finish(project, cfg, record, reports_dir)
        raise RuntimeError(record["reason"])
    gate = json.loads(decision_file.read_text())
    record.update(
        retrained=True,
        outcome="promoted" if gate["promoted"] else "refused",
        reason=gate["reason"],
        version=str(gate["version"]),
        gate=gate,
    )
    return finish(project, cfg, record, reports_dir)


def finish(project, cfg, record: dict, reports_dir: Path) -> dict:
    """Write the loop's record and make it an MLflow run; returns the record."""
    import mlflow

    from components.tracking import stage_run

    record["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with stage_run(cfg.model_name, "retrain", cfg, log_params=False) as run:
        tags = {
            "loop.trigger": record["trigger"],
            "loop.outcome": record["outcome"],
            "loop.reason": record["reason"][:5000],
        }
        if record.get("version"):
            tags["scifolio.model_version"] = record["version"]
        mlflow.set_tags(tags)
        mlflow.log_dict(record, "loop_decision.json")
        record["run_id"] = run.info.run_id
    stamp = record["started_at"].replace(":", "").replace("-", "")
    atomic_write_text(
        Path(reports_dir) / cfg.model_name / "retrain" / f"{stamp}.json", json.dumps(record, indent=2) + "\n"
    )
    log.info("%s loop: %s (%s)", project.name, record["outcome"], record["reason"][:300])
    print(json.dumps({k: record[k] for k in ("project", "trigger", "outcome", "reason")}), file=sys.stdout)
    return record
