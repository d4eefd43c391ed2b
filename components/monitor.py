"""Drift monitoring of a deployed version: its inference log against its reference profile (Evidently).

The same project hook turns a request and the model's answer into one row per item (a forecast
window, an image) of monitored features, both at registration (the validation split answered by the
registered version: the *reference*, stored with the version) and here (the champion's inference
log). Using one function on both sides is what keeps the comparison free of training/serving skew.

Decision rule (thresholds in params.yaml, `<project>.monitor`), every test one of Evidently's:
- column_test "ks" (independent items, e.g. images): two-sample Kolmogorov-Smirnov per numerical
  column, chi-square per categorical one; a column drifts when its p-value is below alpha / n_columns
  (Bonferroni), so with independent items a false alarm has probability at most `alpha`
  (Rabanser et al. 2019, "Failing loudly", found univariate tests with this correction among the
  strongest detectors);
- column_test "wasserstein" (overlapping windows of one series, where p-values overstate evidence):
  a column drifts when its Wasserstein distance, in reference standard deviations, exceeds
  `effect_size` (categorical columns still get chi-square);
- the columns (inputs and outputs together) drift when more than `drift_share` of them drift;
- embeddings (when the project has them) drift when Evidently's domain classifier separates reference
  from current better than the `embedding_quantile` of chance AUROCs;
- drift = the columns or the embeddings drift.

Outputs per check, under monitoring/reports/<project>/<UTC time>-v<version>/: report.html and
report.json (Evidently), decision.json; `latest/` holds a copy of the newest. The check is also an
MLflow run (`monitor`) in the project's experiment, and the model version gets `monitor.*` tags.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.evaluate import atomic_write_text

if TYPE_CHECKING:
    from components.config import Config, MonitorConfig

log = logging.getLogger("scifolio.monitor")

REPORTS_DIR = Path("monitoring/reports")
REFERENCE_ARTIFACT = "reference"  # run artifact folder: reference/v<version>.parquet


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which columns of the feature table the monitor compares, and how."""

    numerical: list[str]  # input features (K-S)
    categorical: list[str]  # input features (chi-square)
    outputs: list[str]  # the model's predictions (K-S)
    embeddings: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # name -> columns

    @property
    def tested(self) -> list[str]:
        return [*self.numerical, *self.categorical, *self.outputs]


# ---- features on both sides -------------------------------------------------------------------


def reference_profile(project, cfg: Config, paths, python_model) -> pd.DataFrame:
    """The validation split's requests, answered by `python_model`, as monitored features."""
    limit = cfg.project.monitor.reference_items
    pairs = ((r, python_model.predict(None, r)) for r in project.reference_requests(cfg, paths, limit))
    return features(project, python_model, pairs)


def features(project, python_model, pairs: Iterable[tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    frames = [project.monitor_features(python_model, request, answer) for request, answer in pairs]
    if not frames:
        return pd.DataFrame(columns=project.monitor_spec(python_model).tested)
    return pd.concat(frames, ignore_index=True)


def read_window(project, python_model, log_file: Path, window: int, request_prefix: str | None = None) -> pd.DataFrame:
    """Features of the newest answered requests of an inference log, at least `window` items in all.

    Only status-200 records whose inputs were logged in full (not as a summary) can be turned into
    features; `request_prefix` keeps the records whose X-Request-ID starts with it.
    """
    from components.serve import read_log

    if not Path(log_file).exists():
        return features(project, python_model, [])
    frames, items = [], 0
    for record in reversed(read_log(log_file)):
        if record.get("status") != 200 or not isinstance(record.get("inputs"), list):
            continue
        if request_prefix and not str(record.get("client_request_id") or "").startswith(request_prefix):
            continue
        pair = (pd.DataFrame(record["inputs"]), pd.DataFrame(record["outputs"]))
        frames.append(features(project, python_model, [pair]))
        items += len(frames[-1])
        if items >= window:
            break
    return pd.concat(frames[::-1], ignore_index=True) if frames else features(project, python_model, [])


# ---- the comparison ---------------------------------------------------------------------------


def compare(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, mcfg: MonitorConfig):
    """Evidently report + decision dict for `current` against `reference`."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift
    from evidently.metrics.embeddings import ModelDriftMethod

    tested = [c for c in spec.tested if c in reference and reference[c].nunique(dropna=True) > 1]
    constant = sorted(set(spec.tested) - set(tested))  # a constant reference column has no distribution to test
    by_effect = mcfg.column_test == "wasserstein"
    if mcfg.column_test not in ("ks", "wasserstein"):
        raise ValueError(f"monitor.column_test: {mcfg.column_test!r} is not ks or wasserstein")
    p_threshold = mcfg.alpha / max(len(tested), 1)
    numerical = [c for c in tested if c not in spec.categorical]
    embedding_cols = [c for cols in spec.embeddings.values() for c in cols]
    definition = DataDefinition(
        numerical_columns=[*numerical, *embedding_cols],
        categorical_columns=[c for c in tested if c in spec.categorical],
        embeddings=spec.embeddings or None,
    )
    method = {c: ("chisquare" if c in spec.categorical else "wasserstein" if by_effect else "ks") for c in tested}
    threshold = {c: (mcfg.effect_size if method[c] == "wasserstein" else p_threshold) for c in tested}
    embedding_methods = {
        name: ModelDriftMethod(bootstrap=True, quantile_probability=mcfg.embedding_quantile) for name in spec.embeddings
    }
    metrics = [ValueDrift(column=c, method=method[c], threshold=threshold[c]) for c in tested]
    metrics += [EmbeddingsDrift(embeddings_name=n, drift_method=m) for n, m in embedding_methods.items()]
    columns = [*tested, *embedding_cols]
    snapshot = Report(metrics).run(
        Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition),
    )
    scores = {}  # p-value (ks, chisquare) or distance in reference stds (wasserstein)
    for item in snapshot.dict()["metrics"]:
        config = item["config"]
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = float(item["value"])
    drifted = sorted(
        c for c, v in scores.items() if (v > threshold[c] if method[c] == "wasserstein" else v < threshold[c])
    )
    inputs = [c for c in tested if c not in spec.outputs]
    outputs = [c for c in tested if c in spec.outputs]
    input_share, output_share = _share(drifted, inputs), _share(drifted, outputs)
    embeddings = {}
    for name, cols in spec.embeddings.items():  # the same method object, called again for its flag
        score, flagged, _ = embedding_methods[name](current[cols].copy(), reference[cols].copy())
        embeddings[name] = {"auroc": float(score), "drift": bool(flagged)}
    share = _share(drifted, tested)
    reasons = []
    if share > mcfg.drift_share:
        detail = ", ".join(f"{c} ({_describe(method[c], scores[c], threshold[c])})" for c in drifted[:6])
        reasons.append(
            f"{len(drifted)} of {len(tested)} columns drifted (share {share:.2f} > {mcfg.drift_share}): "
            f"{detail}{', ...' if len(drifted) > 6 else ''}"
        )
    reasons += [
        f"embeddings {n}: domain-classifier AUROC {e['auroc']:.3f}" for n, e in embeddings.items() if e["drift"]
    ]
    decision = {
        "drift": bool(reasons),
        "reasons": reasons,
        "items": int(len(current)),
        "reference_items": int(len(reference)),
        "column_test": mcfg.column_test,
        "thresholds": {"p_value": p_threshold, "effect_size": mcfg.effect_size, "drift_share": mcfg.drift_share},
        "drifted_inputs": [c for c in drifted if c in inputs],
        "drifted_outputs": [c for c in drifted if c in outputs],
        "drift_share": share,
        "input_drift_share": input_share,
        "output_drift_share": output_share,
        "scores": scores,
        "methods": method,
        "embeddings": embeddings,
        "untested_constant_columns": constant,
    }
    return snapshot, decision


def _describe(method: str, score: float, threshold: float) -> str:
    if method == "wasserstein":
        return f"moved {score:.2f} stds > {threshold}"
    return f"{method} p={score:.1e} < {threshold:.1e}"


def _share(drifted: list[str], columns: list[str]) -> float:
    return sum(c in drifted for c in columns) / len(columns) if columns else 0.0


# ---- one monitoring check of a deployed version ---------------------------------------------------


def check(
    project,
    cfg: Config,
    version: str | None = None,
    log_dir: Path | None = None,
    reports_dir: Path = REPORTS_DIR,
    request_prefix: str | None = None,
    write_html: bool = True,
    log_to_mlflow: bool = True,
    python_model=None,
    reference: pd.DataFrame | None = None,
) -> dict:
    """Compare the newest window of the version's inference log with its reference; returns the decision.

    `version` None: the current champion. `python_model`/`reference` may be passed in by a caller that
    checks many windows (the replay tool) to load them once.
    """
    import mlflow

    from components.register import CHAMPION, champion_version, load_python_model
    from components.serve import DEFAULT_LOG_DIR, log_path
    from components.stages import atomic_dir
    from components.tracking import setup

    setup(cfg.model_name, cfg)
    client = mlflow.MlflowClient()
    entity = client.get_model_version(cfg.model_name, version) if version else champion_version(cfg.model_name)
    if entity is None:  # nothing deployed yet: nothing to compare (the loop then trains the first one)
        log.warning("%s: no registered champion to monitor", cfg.model_name)
        return {
            "model": cfg.model_name,
            "version": None,
            "status": "no_champion",
            "drift": False,
            "items": 0,
            "reasons": [f"no version of {cfg.model_name!r} has the alias {CHAMPION!r} yet"],
            "report_dir": None,
        }
    version = str(entity.version)
    mcfg = cfg.project.monitor
    python_model = python_model or load_python_model(f"models:/{cfg.model_name}/{version}")
    reference = load_reference(cfg.model_name, version) if reference is None else reference
    log_file = log_path(log_dir or DEFAULT_LOG_DIR, cfg.model_name, version)
    current = read_window(project, python_model, log_file, mcfg.window, request_prefix)
    stamp = dt.datetime.now(dt.UTC)
    base = {
        "model": cfg.model_name,
        "version": version,
        "log_file": str(log_file),
        "request_prefix": request_prefix,
        "checked_at": stamp.isoformat(timespec="seconds"),
    }
    out = Path(reports_dir) / cfg.model_name / f"{stamp:%Y%m%dT%H%M%S%fZ}-v{version}"
    with atomic_dir(out) as tmp:
        if len(current) < mcfg.min_items:
            decision = {
                **base,
                "drift": False,
                "status": "insufficient_data",
                "items": int(len(current)),
                "reasons": [f"{len(current)} item(s) in the log window, fewer than min_items={mcfg.min_items}"],
            }
        else:
            snapshot, compared = compare(reference, current, project.monitor_spec(python_model), mcfg)
            decision = {**base, "status": "checked", **compared}
            snapshot.save_json(str(tmp / "report.json"))
            if write_html:
                snapshot.save_html(str(tmp / "report.html"))
        decision["report_dir"] = str(out)
        atomic_write_text(tmp / "decision.json", json.dumps(decision, indent=2) + "\n")
    latest = Path(reports_dir) / cfg.model_name / "latest"
    with atomic_dir(latest) as tmp:
        shutil.copytree(out, tmp, dirs_exist_ok=True)
    if log_to_mlflow:
        log_check(project, cfg, decision, out)
    log.info(
        "%s v%s: %s (%s)",
        cfg.model_name,
        version,
        "DRIFT" if decision["drift"] else "no drift",
        "; ".join(decision["reasons"][:3]) or f"{decision['items']} items, nothing drifted",
    )
    return decision


def log_check(project, cfg: Config, decision: dict, report_dir: Path) -> None:
    import mlflow

    from components.tracking import stage_run

    with stage_run(cfg.model_name, "monitor", cfg, log_params=False) as run:
        mlflow.set_tags(
            {
                "scifolio.model_version": decision["version"],
                "monitor.drift": str(decision["drift"]).lower(),
                "monitor.status": decision["status"],
            }
        )
        numbers = {
            k: decision[k] for k in ("items", "drift_share", "input_drift_share", "output_drift_share") if k in decision
        }
        mlflow.log_metrics({f"monitor/{k}": float(v) for k, v in numbers.items()})
        for name, e in decision.get("embeddings", {}).items():
            mlflow.log_metric(f"monitor/embeddings/{name}/auroc", e["auroc"])
        mlflow.log_artifacts(str(report_dir), "monitoring")
        client = mlflow.MlflowClient()
        for key, value in {
            "monitor.last_drift": str(decision["drift"]).lower(),
            "monitor.last_run_id": run.info.run_id,
            "monitor.last_checked": decision["checked_at"],
        }.items():
            client.set_model_version_tag(cfg.model_name, decision["version"], key, value)


# ---- the reference, stored with each registered version ----------------------------------------


def log_reference(name: str, version: str, reference: pd.DataFrame, local_dir: Path) -> Path:
    """Write reference/v<version>.parquet into the active run and tag the version with its URI."""
    import mlflow

    path = Path(local_dir) / f"v{version}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    reference.to_parquet(path, index=False)
    mlflow.log_artifact(str(path), REFERENCE_ARTIFACT)
    run_id = mlflow.active_run().info.run_id
    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, version, "monitor.reference", f"runs:/{run_id}/{REFERENCE_ARTIFACT}/{path.name}")
    client.set_model_version_tag(name, version, "monitor.reference_items", str(len(reference)))
    return path


def load_reference(name: str, version: str) -> pd.DataFrame:
    import mlflow

    entity = mlflow.MlflowClient().get_model_version(name, version)
    uri = entity.tags.get("monitor.reference")
    if not uri:
        raise RuntimeError(
            f"{name} v{version} has no reference profile (tag monitor.reference): register it again "
            "with this version of scifolio"
        )
    return pd.read_parquet(mlflow.artifacts.download_artifacts(uri))


def even_sample(items: list[Any], limit: int) -> list[Any]:
    """At most `limit` items spread evenly over the list (keeps a long period's start, middle and end)."""
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
