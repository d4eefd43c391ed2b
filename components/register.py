"""Model registry: log the pyfunc, register it as `challenger`, and gate promotion to `champion`.

The registered model is `cfg.model_name` (`energy` for the full profile, `energy-demo` for the demo
one), so a demo challenger is never gated against, nor promoted over, a real champion.

The gate compares the project's `objective.gate` metric. By default (`gate_source="rescore"`) it
re-scores the challenger AND the current champion with the same project scorer on the same evaluation
data (the champion may have been trained on an older data version, so its own logged metric is not
comparable). A project whose scoring is too costly declares `gate_source="logged"`: the gate then reads
the value each version's evaluate stage logged, and the reason says which data versions they came from.
The challenger is promoted only if it beats the champion by more than `register.margin`; either way the
decision and its reason are tagged on the version, logged in the run and written to
data/<project>/registry/decision.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from components.io import atomic_write_text
from components.project import Metric, Objective, PyfuncSpec

log = logging.getLogger("scifolio.register")

CHAMPION, CHALLENGER = "champion", "challenger"


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
    source: str = "rescore"  # how the scores were obtained: rescore (same data) | logged (each version's evaluate)

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


LOG_OMIT = "inference_log_omit"  # MLmodel metadata key: output columns the server logs as summaries only


def log_pyfunc(name: str, spec: PyfuncSpec, card: str, code_paths: list[str] | None, description: str = ""):
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
        pip_requirements=pinned_requirements(spec.requirements) if spec.requirements else None,
        metadata={LOG_OMIT: list(spec.log_omit)} if spec.log_omit else None,
    )
    mlflow.log_text(card, "model_card.md")
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient()
    if description:  # the registered model's page: what it is, beside each version's model card
        client.update_registered_model(name, description=description)
    client.update_model_version(name, version.version, description=card)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def pinned_requirements(names: tuple[str, ...]) -> list[str]:
    """`name==version` of mlflow and each distribution as installed here: what the model was logged with.

    A local version label is dropped (torch 2.13.0+cpu -> 2.13.0): no package index serves it, and the
    public release is the same code (MLflow's own inference does the same).
    """
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in ("mlflow", *names):
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            raise ValueError(f"the pyfunc's requirement {name!r} is not an installed distribution") from None
    return pins


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


def gate(name: str, version: str, metric: Metric, margin: float, score, source: str = "rescore") -> Decision:
    """Promote `version` to champion if score(challenger) beats score(champion) by > margin.

    `score(version_entity) -> float` returns the version's `metric`: the project's scorer bound to the
    evaluation data (source "rescore") or the value its evaluate stage logged (source "logged").
    """
    with promotion_lock(name):
        return _gate(name, version, metric, margin, score, source)


def _gate(name: str, version: str, metric: Metric, margin: float, score, source: str) -> Decision:
    import mlflow

    client = mlflow.MlflowClient()
    challenger = client.get_model_version(name, version)
    challenger_score = float(score(challenger))
    current = champion_version(name)
    how = "re-scored on the same data" if source == "rescore" else "as logged at evaluation"
    common = {"metric": metric.name, "margin": margin, "source": source}
    if not math.isfinite(challenger_score):  # a diverged model never becomes champion
        reason = f"challenger {metric.name} is not finite ({challenger_score})"
        decision = Decision(
            name,
            version,
            False,
            reason,
            challenger_score=challenger_score,
            champion_version=current and current.version,
            champion_score=None,
            **common,
        )
    elif current is None:
        decision = Decision(
            name,
            version,
            True,
            "no champion yet",
            challenger_score=challenger_score,
            champion_version=None,
            champion_score=None,
            **common,
        )
    elif current.version == version:
        decision = Decision(
            name,
            version,
            True,
            "already champion",
            challenger_score=challenger_score,
            champion_version=version,
            champion_score=challenger_score,
            **common,
        )
    else:
        champion_score = float(score(current))
        better = metric.better(challenger_score, champion_score, margin)
        verb = "beats" if better else "does not beat"
        reason = (
            f"challenger v{version} {metric.name}={challenger_score:.5f} {verb} champion v{current.version} "
            f"{metric.name}={champion_score:.5f} by more than the margin {margin} ({metric.direction}; {how}"
        )
        if source == "logged":
            reason += (
                f": challenger data {challenger.tags.get('scifolio.data_version', '?')[:12]}, "
                f"champion data {current.tags.get('scifolio.data_version', '?')[:12]}"
            )
        decision = Decision(
            name,
            version,
            better,
            reason + ")",
            challenger_score=challenger_score,
            champion_version=current.version,
            champion_score=champion_score,
            **common,
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
        "gate.source": decision.source,
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


def logged_score(metric: Metric):
    """score(version) for source "logged": the metric the version's training run logged at evaluation."""
    import mlflow

    def score(version) -> float:
        metrics = mlflow.MlflowClient().get_run(version.run_id).data.metrics
        if metric.name not in metrics:
            raise RuntimeError(f"{version.name} v{version.version}: run {version.run_id} logged no {metric.name}")
        return float(metrics[metric.name])

    return score


def rescored(score_python_model):
    """score(version) for source "rescore": the project's scorer on the registered version itself."""

    def score(version) -> float:
        return float(score_python_model(load_python_model(f"models:/{version.name}/{version.version}")))

    return score


def register_version(project, cfg, paths, spec: PyfuncSpec, info: dict, metrics: dict, out_dir: Path) -> Decision:
    """The register stage: log and register the pyfunc, store its monitoring reference, gate it."""
    import mlflow

    from components.project import capabilities

    name, objective = cfg.model_name, project.objective
    card = model_card(name, project.description, project.limitations, info["data_version"], metrics, info["hparams"])
    profile_note = (
        "" if cfg.profile == "full" else f" Profile {cfg.profile!r}: trained on synthetic data, not a real model."
    )
    version = log_pyfunc(name, spec, card, code_paths=None, description=project.description + profile_note).version
    client = mlflow.MlflowClient()
    for key, value in {
        "scifolio.data_version": info["data_version"],
        "scifolio.profile": cfg.profile,
        "scifolio.project": project.name,
    }.items():
        client.set_model_version_tag(name, version, key, value)
    if "monitorable" in capabilities(project):
        # what the monitor will compare this version's traffic with, answered by the registered model itself
        from components.monitor import log_reference, reference_profile

        registered = load_python_model(f"models:/{name}/{version}")
        log_reference(name, version, reference_profile(project, cfg, paths, registered), out_dir / "reference")
    else:
        log.info("%s v%s: no monitoring reference, the project is not monitorable", name, version)
    check_objective(objective, metrics)
    if objective.gate_source == "logged":
        score = logged_score(objective.gate)
    else:
        score = rescored(lambda python_model: project.score(python_model, cfg, paths))
    decision = gate(name, version, objective.gate, cfg.project.register.margin, score, objective.gate_source)
    write_decision(decision, out_dir)
    return decision


def check_objective(objective: Objective, metrics: dict) -> None:
    """The evaluate stage must have logged the gate metric: a typo in a project's objective fails here."""
    if objective.gate.name not in metrics:
        raise RuntimeError(
            f"objective.gate {objective.gate.name!r} is not among the evaluated metrics {sorted(metrics)}"
        )
