"""Ablation studies, written once: named variants of a project's config, each trained over the same seeds.

`python -m pipelines <project> ablate` (DVC stage `ablate@<project>`) reads `ablations.<project>` in
params.yaml:

    ablations:
      energy:
        seeds: 3
        variants:
          revin_off: {model.revin: false}
          patch_8: {model.patch_len: 8, model.stride: 4}

Protocol, the same for every project:
- `base` (the project's section as params.yaml and the profile give it) and each variant are trained from
  the prepared data with the project's own datamodule/module hooks, once per seed. Seed s seeds the
  initialisation and the data order of every variant, so runs pair across variants by seed.
- The score is the project's selection metric (`objective.select`, e.g. val/loss) at the best epoch, on
  the validation split: a design choice is selected on validation, never on test.
- Hyper-parameters come from params.yaml, not from the tune stage: they were tuned for the base and would
  favour it over every variant.
- Per variant: mean and sd over seeds, the paired difference to the base (variant - base, seed by seed)
  with a paired t-test across seeds, and the training cost (seconds per run, epochs, parameters).

Outputs (data/<p>/ablation/, written atomically): metrics.json (`dvc metrics`), runs.csv (one row per
variant x seed), plots/ablation.csv (`dvc plots`), table.md, ablation.png. MLflow: one parent run per
study (tag scifolio.stage=ablate) holding those files, one nested run per variant x seed tagged
`ablation.variant` and `ablation.seed`, streaming its epochs like a train run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

from components.config import Config, ConfigError, build, deep_merge, split_key
from components.io import atomic_dir
from components.project import Paths, Project

log = logging.getLogger("scifolio.ablate")

BASE = "base"


@dataclasses.dataclass
class RunResult:
    variant: str
    seed: int
    score: float  # the selection metric at the best epoch (validation)
    epochs: int
    seconds: float
    parameters: int
    run_id: str
    validation: dict = dataclasses.field(default_factory=dict)  # every val/* metric at the best epoch


# ---- the variants ---------------------------------------------------------------------------


def nested(changes: dict[str, Any]) -> dict:
    """{'model.revin': False} -> {'model': {'revin': False}} (a quoted segment keeps its dots)."""
    out: dict = {}
    for key, value in changes.items():
        *parents, leaf = split_key(str(key))
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part!r} is set to a value and used as a section")
        node[leaf] = value
    return out


def variant_configs(project: Project, cfg: Config) -> dict[str, Config]:
    """`base` and every variant to run, each a complete, checked config (a typo names the variant's key)."""
    study = cfg.ablations
    if not study.variants:
        raise ConfigError(f"ablations.{cfg.name}: no variants declared (ablations.{cfg.name}.variants in params.yaml)")
    section = cfg.raw[cfg.name]
    epochs = {"train": {"max_epochs": study.max_epochs}} if study.max_epochs else {}
    chosen = study.run or list(study.variants)
    configs = {}
    for name in [BASE, *chosen]:
        where = f"ablations.{cfg.name}.variants.{name}" if name != BASE else cfg.name
        changes = nested(study.variants[name]) if name != BASE else {}
        for key in changes:
            if key not in section:
                raise ConfigError(f"{where}.{key}: not a key of the {cfg.name} section (keys: {', '.join(section)})")
        merged = deep_merge(deep_merge(section, changes, cfg.name), epochs, cfg.name)
        typed = build(project.section, merged, where)
        configs[name] = dataclasses.replace(cfg, project=typed, raw={**cfg.raw, cfg.name: merged})
    return configs


# ---- one run ---------------------------------------------------------------------------------


def train_once(project: Project, cfg: Config, paths: Paths, seed: int, work: Path, run_id: str) -> dict:
    import lightning.pytorch as pl

    from components.train import fit

    pl.seed_everything(seed, workers=True, verbose=False)  # before build: the initialisation pairs by seed
    datamodule = project.datamodule(cfg, paths)
    module = project.build_module(cfg, datamodule, {})
    parameters = sum(p.numel() for p in module.parameters())
    select = project.objective.select
    # one device per run: a study is many short runs (DDP's launcher would re-run the whole stage per process)
    one_device = dataclasses.replace(cfg.project.train, devices=1)
    result = fit(module, datamodule, one_device, work, select, seed, run_id)
    # the other validation metrics of the best epoch (medical selects on val/loss; val/auroc is read beside it)
    scored = [r for r in result.history if math.isfinite(r.get(select.name, math.nan))]
    pick = min if select.direction == "minimize" else max
    best = pick(scored, key=lambda r: r[select.name]) if scored else {}
    validation = {k: v for k, v in best.items() if k.startswith("val/")}
    return {
        "score": result.best_score,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "parameters": parameters,
        "validation": validation,
    }


# ---- the statistics ---------------------------------------------------------------------------


def summarise(runs: list[RunResult], direction: str) -> list[dict]:
    """One row per variant: mean, sd, paired difference to base and its p-value, cost."""
    import numpy as np
    from scipy import stats

    by_variant: dict[str, dict[int, RunResult]] = {}
    for r in runs:
        by_variant.setdefault(r.variant, {})[r.seed] = r
    base = by_variant[BASE]
    rows = []
    for name, seeds in by_variant.items():
        scores = np.array([seeds[s].score for s in sorted(seeds)])
        row = {
            "variant": name,
            "runs": len(scores),
            "mean": float(scores.mean()),
            "sd": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan,
            "diff": 0.0,
            "diff_sd": 0.0,
            "p_value": math.nan,
            "better": "",
            "seconds": float(np.mean([r.seconds for r in seeds.values()])),
            "epochs": float(np.mean([r.epochs for r in seeds.values()])),
            "parameters": int(next(iter(seeds.values())).parameters),
        }
        if name != BASE:
            paired = sorted(set(seeds) & set(base))
            diffs = np.array([seeds[s].score - base[s].score for s in paired])
            row["diff"] = float(diffs.mean())
            row["diff_sd"] = float(diffs.std(ddof=1)) if len(diffs) > 1 else math.nan
            if len(diffs) > 1 and np.ptp(diffs) > 0:  # identical differences: t is undefined, not significant
                row["p_value"] = float(
                    stats.ttest_rel([seeds[s].score for s in paired], [base[s].score for s in paired]).pvalue
                )
            improves = row["diff"] < 0 if direction == "minimize" else row["diff"] > 0
            row["better"] = "yes" if improves and row["p_value"] < 0.05 else "no" if row["p_value"] < 0.05 else "n.s."
        rows.append(row)
    return rows


def markdown(
    rows: list[dict], metric: str, direction: str, seeds: list[int], changes: dict[str, dict], header: str
) -> str:
    lines = [
        header,
        "",
        f"Score: `{metric}` at the best epoch on the validation split ({direction}), seeds {seeds} "
        "(paired across variants). diff = variant - base, mean over seeds; p: paired t-test across seeds "
        "(n.s. = p >= 0.05); cost: mean training seconds per run.",
        "",
        "| variant | overrides | mean ± sd | diff vs base | p | better | s/run | epochs | parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        over = ", ".join(f"{k}={json.dumps(v)}" for k, v in changes.get(r["variant"], {}).items()) or "-"
        p = "-" if math.isnan(r["p_value"]) else f"{r['p_value']:.3f}"
        diff = "-" if r["variant"] == BASE else f"{r['diff']:+.4g}"
        lines.append(
            f"| {r['variant']} | {over} | {r['mean']:.4g} ± {r['sd']:.2g} | {diff} | {p} | {r['better'] or '-'} "
            f"| {r['seconds']:.1f} | {r['epochs']:.1f} | {r['parameters']:,} |"
        )
    return "\n".join(lines) + "\n"


def figure(runs: list[RunResult], rows: list[dict], metric: str):
    """Each run as a point, each variant's mean ± sd as a bar: the spread over seeds is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2))
    ax.bar(range(len(names)), [r["mean"] for r in rows], yerr=[r["sd"] for r in rows], color="#9ecae1", capsize=4)
    for i, name in enumerate(names):
        points = [r.score for r in runs if r.variant == name]
        ax.scatter([i] * len(points), points, color="#08519c", s=14, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(metric)
    low = min(r.score for r in runs)
    high = max(r.score for r in runs)
    ax.set_ylim(low - 0.15 * (high - low + 1e-12), high + 0.15 * (high - low + 1e-12))
    fig.tight_layout()
    return fig


# ---- the stage ---------------------------------------------------------------------------------


def run_study(project: Project, cfg: Config, paths: Paths) -> list[dict]:
    import mlflow
    import pandas as pd

    from components.stages import data_version
    from components.tracking import stage_run

    version = data_version(paths)  # refuse unvalidated or changed data
    configs = variant_configs(project, cfg)  # every variant checked before anything trains
    study = cfg.ablations
    seeds = [cfg.seed + i for i in range(study.seeds)]
    select = project.objective.select
    changes = {name: study.variants[name] for name in configs if name != BASE}
    runs: list[RunResult] = []
    with stage_run(cfg.model_name, "ablate", cfg, version) as parent, atomic_dir(paths.ablation) as tmp:
        mlflow.log_params({"ablation.variants": ",".join(configs), "ablation.seeds": study.seeds})
        for name, variant_cfg in configs.items():
            for seed in seeds:
                with mlflow.start_run(run_name=f"{name}-seed{seed}", nested=True) as child:
                    mlflow.set_tags({"ablation.variant": name, "ablation.seed": seed})
                    mlflow.log_params({f"override.{k}": v for k, v in changes.get(name, {}).items()})
                    try:
                        work = tmp / "work" / f"{name}-{seed}"
                        out = train_once(project, variant_cfg, paths, seed, work, child.info.run_id)
                    except Exception as err:
                        raise RuntimeError(f"ablation {name!r} seed {seed}: {err}") from err
                    _remove(work)  # its checkpoint: the study keeps scores, not models
                    mlflow.log_metrics({f"best/{select.name}": out["score"], "train/seconds": out["seconds"]})
                runs.append(RunResult(variant=name, seed=seed, run_id=child.info.run_id, **out))
                log.info("%s seed %d: %s=%.5f (%.1f s)", name, seed, select.name, out["score"], out["seconds"])
        _remove(tmp / "work")
        rows = summarise(runs, select.direction)
        header = f"## Ablation study: {cfg.name} ({cfg.profile} profile, {_hardware()})"
        (tmp / "table.md").write_text(markdown(rows, select.name, select.direction, seeds, changes, header))
        table = pd.DataFrame([{**dataclasses.asdict(r), **r.validation} for r in runs]).drop(columns="validation")
        table.to_csv(tmp / "runs.csv", index=False)
        (tmp / "plots").mkdir()
        pd.DataFrame(rows)[["variant", "mean", "sd", "diff"]].to_csv(tmp / "plots/ablation.csv", index=False)
        metrics = {
            "metric": select.name,
            "direction": select.direction,
            "seeds": seeds,
            "variants": {r["variant"]: {k: v for k, v in r.items() if k != "variant"} for r in rows},
        }
        (tmp / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2) + "\n")
        fig = figure(runs, rows, select.name)
        fig.savefig(tmp / "ablation.png", dpi=120)
        mlflow.log_figure(fig, "ablation/ablation.png")
        for r in rows:
            mlflow.log_metrics({f"ablation/{r['variant']}/mean": r["mean"], f"ablation/{r['variant']}/diff": r["diff"]})
        mlflow.log_artifact(str(tmp / "table.md"), "ablation")
        mlflow.log_artifact(str(tmp / "runs.csv"), "ablation")
        mlflow.log_artifact(str(tmp / "metrics.json"), "ablation")
        mlflow.set_tag("ablation.parent", "true")
        log.info("ablation study %s: %d runs, parent run %s", cfg.name, len(runs), parent.info.run_id)
    return rows


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _finite(value):
    """NaN (an undefined sd or p-value) as null: JSON has no NaN, and dvc metrics reads JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _hardware() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU, {torch.get_num_threads()} threads, {platform.machine()}"
