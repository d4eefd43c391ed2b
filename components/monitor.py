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

Outputs per check, under monitoring/reports/<model>/<UTC time>-v<version>/ (<model> is cfg.model_name:
`energy`, `energy-demo`): report.html and report.json (Evidently), decision.json; `latest/` holds a copy
of the newest. The check is also an MLflow run (`monitor`) in the model's experiment (cfg.model_name),
and the model version gets `monitor.*` tags.

Robustness (the monitor decides on what is valid and says what it skipped, never stops on a library
message): a log line that is not a JSON object, a record whose inputs are not a table or lack the
input columns, one the project's features cannot read, and items whose features are all null are
skipped and counted (`log` in decision.json: counts by reason and the first line numbers); too few
valid items left gives the `insufficient_data` status. In the comparison, numbers are compared at
SIGNIFICANT_DIGITS (float noise would otherwise make Evidently's report histogram fail with "Too many
bins for data range" on a column that is constant up to rounding, e.g. window standard deviations
under a pure level shift), a column with no values in the window is reported untested, and a column
Evidently still cannot report is tested with Evidently's bare statistical test (no binning); see
`compare`.
"""

from __future__ import annotations

import collections
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

from components.inference_log import DEFAULT_LOG_DIR, MissingBlob, blob_dir, log_path, restore_cells, scan_log
from components.io import atomic_dir, atomic_write_text, jsonable

if TYPE_CHECKING:
    from components.config import Config, MonitorConfig

log = logging.getLogger("scifolio.monitor")

REPORTS_DIR = Path("monitoring/reports")
REFERENCE_ARTIFACT = "reference"  # run artifact folder: reference/v<version>.parquet
SIGNIFICANT_DIGITS = 12  # numerical features are compared at this precision (None: as they are)
MIN_COLUMN_VALUES = 2  # non-null values a column needs in the current window to be tested
LISTED_LINES = 5  # malformed log lines named (by number) in decision.json


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


@dataclasses.dataclass
class LogScan:
    """What reading a log window found: lines examined, records used, and what was skipped or malformed."""

    lines: int = 0  # non-blank lines examined (newest first, until the window was full)
    records: int = 0  # records whose items are in the window
    items: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # not comparable traffic
    malformed: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # reason -> records
    examples: list = dataclasses.field(default_factory=list)  # the first LISTED_LINES {"line", "reason"}

    def bad(self, line: int, reason: str, detail: str = "") -> None:
        """Count one malformed record under `reason` (a fixed category); name its line while few are named."""
        self.malformed[reason] += 1
        if len(self.examples) < LISTED_LINES:
            self.examples.append({"line": line, "reason": f"{reason}: {detail}"[:300] if detail else reason})

    def to_dict(self) -> dict:
        return {
            "lines_examined": self.lines,
            "records_used": self.records,
            "items": self.items,
            "skipped": dict(self.skipped),
            "malformed": sum(self.malformed.values()),
            "malformed_by_reason": dict(self.malformed),
            "malformed_lines": self.examples,
        }


def _records(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def scan_window(
    project, python_model, log_file: Path, window: int, request_prefix: str | None = None
) -> tuple[pd.DataFrame, LogScan]:
    """Features of the newest answered requests of an inference log, at least `window` items in all, and
    what was skipped on the way.

    Only status-200 records whose inputs were logged in full (not as a table summary; capped cells are
    restored from the log's blobs) can be turned into features; `request_prefix` keeps the records
    whose X-Request-ID starts with it. A line that is not a JSON object, a record whose inputs/outputs
    are not tables, lack the input columns or cannot be turned into features, and feature rows that are
    all null, are skipped and counted (LogScan.malformed), never raised: the decision is taken on the
    valid ones (and is `insufficient_data` when too few remain).
    """
    scan = LogScan()
    empty = features(project, python_model, [])
    if not Path(log_file).exists():
        return empty, scan
    spec = project.monitor_spec(python_model)
    embedding_cols = [c for cols in spec.embeddings.values() for c in cols]
    blobs = blob_dir(log_file)
    frames = []
    for number, record, problem in reversed(list(scan_log(log_file))):
        scan.lines += 1
        if problem:  # "not JSON (...)", "not a JSON object (a JSON list)"
            scan.bad(number, problem.split(" (")[0], problem)
            continue
        if record.get("status") != 200:
            scan.skipped["not answered (status is not 200)"] += 1
            continue
        if request_prefix and not str(record.get("client_request_id") or "").startswith(request_prefix):
            scan.skipped["another request prefix"] += 1
            continue
        inputs, outputs = record.get("inputs"), record.get("outputs")
        if isinstance(inputs, dict) and inputs.get("summary") is True:
            scan.skipped["inputs logged as a summary"] += 1
            continue
        if not _records(inputs) or outputs is None:
            scan.bad(number, "inputs/outputs are not tables of records")
            continue
        try:
            request = pd.DataFrame(restore_cells(inputs, blobs))
            answer = pd.DataFrame(restore_cells(outputs, blobs))
        except MissingBlob as err:
            scan.bad(number, "capped cell without its stored copy", str(err))
            continue
        except (TypeError, ValueError) as err:
            scan.bad(number, "inputs/outputs are not tables of records", str(err))
            continue
        try:
            table = project.monitor_features(python_model, request, answer)
        except KeyError as err:
            scan.bad(number, "missing input column(s)", str(err))
            continue
        except Exception as err:  # noqa: BLE001  a record the project's features cannot read, whatever it raises
            scan.bad(number, "features failed", f"{type(err).__name__}: {str(err)[:200]}")
            continue
        missing = [c for c in (*spec.tested, *embedding_cols) if c not in table]
        if missing:
            scan.bad(number, "missing feature column(s)", str(missing[:5]))
            continue
        numeric = [c for c in spec.tested if c not in spec.categorical]
        null = table[numeric].apply(pd.to_numeric, errors="coerce").isna().all(axis=1)
        null &= table[spec.categorical].isna().all(axis=1)
        if embedding_cols:
            null |= table[embedding_cols].apply(pd.to_numeric, errors="coerce").isna().any(axis=1)
        if null.all():
            scan.bad(number, "all monitored features null")
            continue
        table = table[~null.to_numpy()].reset_index(drop=True)
        frames.append(table)
        scan.records += 1
        scan.items += len(table)
        if scan.items >= window:
            break
    return (pd.concat(frames[::-1], ignore_index=True) if frames else empty), scan


def read_window(project, python_model, log_file: Path, window: int, request_prefix: str | None = None) -> pd.DataFrame:
    """The features of `scan_window`, without its counts."""
    return scan_window(project, python_model, log_file, window, request_prefix)[0]


# ---- the comparison ---------------------------------------------------------------------------


def significant(values: pd.Series, digits: int | None = SIGNIFICANT_DIGITS) -> pd.Series:
    """Numbers rounded to `digits` significant digits: float noise below that becomes an exact tie.

    Why: a feature that is the same on every item up to rounding (the standard deviation of windows that
    differ only by a level shift: 0.9561783424584943 vs ...944) is not constant to `nunique`, and the
    histogram Evidently draws for the report then fails with numpy's "Too many bins for data range"
    (10 bins cannot split a range of 1e-16). Rounded, such a column is constant and reported untested;
    a real difference (anything above 1e-12 relative) is untouched.
    """
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    if digits is None:
        return numbers
    v = numbers.to_numpy()
    with np.errstate(all="ignore"):
        magnitude = np.where(np.isfinite(v) & (v != 0), np.floor(np.log10(np.abs(v))), 0.0)
        scale = 10.0 ** (digits - 1 - magnitude)
        rounded = np.round(v * scale) / scale
    return pd.Series(np.where(np.isfinite(rounded), rounded, v), index=numbers.index, name=numbers.name)


def _stattest(reference: pd.Series, current: pd.Series, categorical: bool, method: str, threshold: float) -> float:
    """Evidently's own statistical test for one column, called directly: no report, no histogram."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Categorical if categorical else ColumnType.Numerical
    ref, cur = reference.dropna(), current.dropna()
    return float(get_stattest(ref, cur, kind, method)(ref, cur, kind, threshold).drift_score)


def compare(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec, mcfg: MonitorConfig):
    """Evidently report + decision dict for `current` against `reference`.

    Robust to what real traffic produces: numerical features are compared at SIGNIFICANT_DIGITS (see
    `significant`); a column with fewer than MIN_COLUMN_VALUES non-null values in the window is reported
    untested (`untested_empty_columns`), as a constant reference column is (`untested_constant_columns`);
    and should Evidently still fail on a column (a ValueError such as "Too many bins for data range" from
    its report histogram), that column alone is tested with Evidently's statistical test called
    directly, which needs no binning (`fallbacks` names it and why; it is then absent from report.html).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift
    from evidently.metrics.embeddings import ModelDriftMethod

    if mcfg.column_test not in ("ks", "wasserstein"):
        raise ValueError(f"monitor.column_test: {mcfg.column_test!r} is not ks or wasserstein")
    reference, current = reference.copy(), current.copy()
    for c in spec.tested:
        if c not in spec.categorical:
            for frame in (reference, current):
                if c in frame:
                    frame[c] = significant(frame[c], SIGNIFICANT_DIGITS)
    present = [c for c in spec.tested if c in reference and c in current]
    tested = [c for c in present if reference[c].nunique(dropna=True) > 1]
    constant = sorted(set(spec.tested) - set(tested))  # a constant reference column has no distribution to test
    empty = sorted(c for c in tested if current[c].notna().sum() < MIN_COLUMN_VALUES)
    tested = [c for c in tested if c not in empty]
    constant = [c for c in constant if c not in empty]
    by_effect = mcfg.column_test == "wasserstein"
    p_threshold = mcfg.alpha / max(len(tested), 1)
    embedding_cols = [c for cols in spec.embeddings.values() for c in cols]
    method = {c: ("chisquare" if c in spec.categorical else "wasserstein" if by_effect else "ks") for c in tested}
    threshold = {c: (mcfg.effect_size if method[c] == "wasserstein" else p_threshold) for c in tested}
    embedding_methods = {
        name: ModelDriftMethod(bootstrap=True, quantile_probability=mcfg.embedding_quantile) for name in spec.embeddings
    }

    def run(columns: list[str], embeddings: bool):
        definition = DataDefinition(
            numerical_columns=[
                *(c for c in columns if c not in spec.categorical),
                *(embedding_cols if embeddings else []),
            ],
            categorical_columns=[c for c in columns if c in spec.categorical],
            embeddings=(spec.embeddings or None) if embeddings else None,
        )
        metrics = [ValueDrift(column=c, method=method[c], threshold=threshold[c]) for c in columns]
        if embeddings:
            metrics += [EmbeddingsDrift(embeddings_name=n, drift_method=m) for n, m in embedding_methods.items()]
        keep = [*columns, *(embedding_cols if embeddings else [])]
        return Report(metrics).run(
            Dataset.from_pandas(current[keep].reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference[keep].reset_index(drop=True), data_definition=definition),
        )

    fallbacks: dict[str, str] = {}
    scores: dict[str, float] = {}  # p-value (ks, chisquare) or distance in reference stds (wasserstein)
    if not tested and not spec.embeddings:
        snapshot = None  # nothing testable: no report, and no drift
    else:
        snapshot = _run_guarded(run, tested, spec, method, threshold, reference, current, scores, fallbacks)
        tested = [c for c in tested if c not in fallbacks or c in scores]
    for item in snapshot.dict()["metrics"] if snapshot is not None else []:
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
        score, flagged, _ = embedding_methods[name](current[cols].dropna().copy(), reference[cols].dropna().copy())
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
        "methods": {c: method[c] for c in tested},
        "embeddings": embeddings,
        "untested_constant_columns": constant,
        "untested_empty_columns": empty,
        "fallbacks": fallbacks,
    }
    return snapshot, decision


def _run_guarded(run, tested, spec, method, threshold, reference, current, scores, fallbacks):
    """The report of all columns; on a ValueError, the failing columns by the bare test (see `compare`)."""
    try:
        return run(tested, True)
    except ValueError:
        failing = {}
        for c in tested:  # which column(s) Evidently cannot report
            try:
                run([c], False)
            except ValueError as err:
                failing[c] = str(err)
        if not failing:
            raise
    for c, why in failing.items():
        try:
            scores[c] = _stattest(reference[c], current[c], c in spec.categorical, method[c], threshold[c])
            fallbacks[c] = f"Evidently failed ({why[:160]}); tested with its {method[c]} test directly"
        except Exception as err:  # noqa: BLE001  not even the bare test: the column is untested
            fallbacks[c] = f"untested: Evidently failed ({why[:160]}), the bare test too ({str(err)[:160]})"
    log.warning("monitor: %d column(s) tested outside the Evidently report: %s", len(failing), fallbacks)
    rest = [c for c in tested if c not in failing]
    return run(rest, True) if rest or spec.embeddings else None


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
    log_file = log_path(log_dir or DEFAULT_LOG_DIR, cfg.model_name, version)
    if Path(log_file).exists():
        python_model = python_model or load_python_model(f"models:/{cfg.model_name}/{version}")
        reference = load_reference(cfg.model_name, version) if reference is None else reference
        current, scan = scan_window(project, python_model, log_file, mcfg.window, request_prefix)
    else:  # no traffic yet (the monitor stage right after register): no item, so no model to load (seconds)
        current, scan = [], LogScan()
    stamp = dt.datetime.now(dt.UTC)
    base = {
        "model": cfg.model_name,
        "project": getattr(project, "name", None),
        "version": version,
        "log_file": str(log_file),
        "request_prefix": request_prefix,
        "checked_at": stamp.isoformat(timespec="seconds"),
        "log": scan.to_dict(),
    }
    out = Path(reports_dir) / cfg.model_name / f"{stamp:%Y%m%dT%H%M%S%fZ}-v{version}"
    with atomic_dir(out) as tmp:
        if len(current) < mcfg.min_items:
            decision = {
                **base,
                "drift": False,
                "status": "insufficient_data",
                "items": int(len(current)),
                "reasons": [
                    f"{len(current)} item(s) in the log window, fewer than min_items={mcfg.min_items}"
                    + (f" ({sum(scan.malformed.values())} malformed record(s) skipped)" if scan.malformed else "")
                ],
            }
        else:
            snapshot, compared = compare(reference, current, project.monitor_spec(python_model), mcfg)
            decision = {**base, "status": "checked", **compared}
            if snapshot is not None:
                snapshot.save_json(str(tmp / "report.json"))
                if write_html:
                    snapshot.save_html(str(tmp / "report.html"))
        decision["report_dir"] = str(out)
        atomic_write_text(tmp / "decision.json", json.dumps(jsonable(decision), indent=2, allow_nan=False) + "\n")
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
