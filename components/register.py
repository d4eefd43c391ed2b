"""Model registry: log the pyfunc, register it as `challenger`, and gate promotion to `champion`.

The gate re-scores the challenger AND the current champion with the same project scorer on the
same evaluation data (the champion may have been trained on an older data version, so its own
logged metric is not comparable). The challenger is promoted only if it beats the champion on the
primary metric by more than `register.margin`; either way the decision and its reason are tagged
on the version, logged in the run and written to data/<project>/registry/decision.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

from components.evaluate import atomic_write_text
from components.project import Metric

log = logging.getLogger("scifolio.register")

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclasses.dataclass
class PyfuncSpec:
    python_model: Any  # path of a models-from-code file calling mlflow.models.set_model(...)
    artifacts: dict[str, str]  # name -> local file, copied into the logged model
    input_example: Any  # a pandas DataFrame the model accepts
    output_example: Any  # what it returns for input_example


@dataclasses.dataclass
class Decision:
    model: str
    version: str
    promoted: bool
    reason: str
    metric: str
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    margin: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_card(
    name: str, description: str, limitations: str, data_version: str, metrics: dict[str, float], params: dict
) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    hparams = "\n".join(f"- `{k}`: {v}" for k, v in sorted(params.items()))
    return f"""# Model card: {name}

**Data version** (sha256 of the validated data): `{data_version}`

## Protocol
{description}

## Metrics
| metric | value |
|---|---|
{rows}

## Training parameters
{hparams}

## Limitations
{limitations}
"""


def log_pyfunc(name: str, spec: PyfuncSpec, card: str, code_paths: list[str]):
    """Log the pyfunc (with signature and input example) into the active run and register it."""
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(spec.input_example, spec.output_example)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=spec.python_model,
        artifacts=spec.artifacts,
        signature=signature,
        input_example=spec.input_example,
        code_paths=code_paths,
    )
    mlflow.log_text(card, "model_card.md")
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient()
    client.update_model_version(name, version.version, description=card)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def champion_version(name: str):
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def load_python_model(uri: str):
    import mlflow

    return mlflow.pyfunc.load_model(uri).unwrap_python_model()


def promotion_lock(name: str):
    """An exclusive lock per (tracking store, model) held from reading the champion to moving the alias.

    Without it two loops could both read champion vN, both beat it, and both promote: the later
    alias write would silently undo the first. The lock is a file on this machine (filelock);
    loops on several machines are serialised by the scheduler instead (retrain.yml's concurrency group).
    """
    import hashlib
    import tempfile

    import mlflow
    from filelock import FileLock

    key = hashlib.sha256(f"{mlflow.get_tracking_uri()}|{name}".encode()).hexdigest()[:16]
    return FileLock(str(Path(tempfile.gettempdir()) / f"scifolio-promote-{key}.lock"), timeout=3600)


def gate(name: str, version: str, metric: Metric, margin: float, score) -> Decision:
    """Promote `version` to champion if score(challenger) beats score(champion) by > margin.

    `score(python_model) -> float` is the project's scorer bound to the evaluation data.
    """
    with promotion_lock(name):
        return _gate(name, version, metric, margin, score)


def _gate(name: str, version: str, metric: Metric, margin: float, score) -> Decision:
    challenger_score = float(score(load_python_model(f"models:/{name}/{version}")))
    current = champion_version(name)
    if not math.isfinite(challenger_score):  # a diverged model never becomes champion
        decision = Decision(
            name,
            version,
            False,
            f"challenger {metric.name} is not finite ({challenger_score})",
            metric.name,
            challenger_score,
            current and current.version,
            None,
            margin,
        )
    elif current is None:
        decision = Decision(name, version, True, "no champion yet", metric.name, challenger_score, None, None, margin)
    elif current.version == version:
        decision = Decision(
            name, version, True, "already champion", metric.name, challenger_score, version, challenger_score, margin
        )
    else:
        champion_score = float(score(load_python_model(f"models:/{name}/{current.version}")))
        better = metric.better(challenger_score, champion_score, margin)
        verb = "beats" if better else "does not beat"
        reason = (
            f"challenger v{version} {metric.name}={challenger_score:.5f} {verb} champion v{current.version} "
            f"{metric.name}={champion_score:.5f} by more than the margin {margin} ({metric.direction})"
        )
        decision = Decision(
            name, version, better, reason, metric.name, challenger_score, current.version, champion_score, margin
        )
    record(decision)
    return decision


def record(decision: Decision) -> None:
    """Move the alias (one call: the registry switches it atomically) and make the decision visible."""
    import mlflow

    client = mlflow.MlflowClient()
    if decision.promoted:
        client.set_registered_model_alias(decision.model, CHAMPION, decision.version)
    tags = {
        "gate.decision": "promoted" if decision.promoted else "refused",
        "gate.reason": decision.reason,
        "gate.metric": decision.metric,
        "gate.challenger_score": f"{decision.challenger_score:.6f}",
    }
    if decision.champion_score is not None:
        tags["gate.champion_version"] = str(decision.champion_version)
        tags["gate.champion_score"] = f"{decision.champion_score:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(decision.model, decision.version, key, value)
    if mlflow.active_run():
        mlflow.log_dict(decision.to_dict(), "gate_decision.json")
        mlflow.set_tags(tags)
    log.info("%s v%s: %s (%s)", decision.model, decision.version, tags["gate.decision"], decision.reason)


def write_decision(decision: Decision, out_dir: Path) -> Path:
    path = out_dir / "decision.json"
    atomic_write_text(path, json.dumps(decision.to_dict(), indent=2) + "\n")
    return path
