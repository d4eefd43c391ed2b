"""The pipeline stages, written once for every project.

pull -> validate -> prepare -> tune -> train -> evaluate -> register

Each stage reads the previous stage's folder under data/<project>/, writes its own folder through a
temporary directory that is renamed into place only when the stage succeeded (a failed stage never
leaves an output that DVC or a later stage would take for complete), and logs to MLflow.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from components.config import Config
from components.io import atomic_dir
from components.project import Paths, Project

log = logging.getLogger("scifolio.stages")

STAGES = ("pull", "validate", "prepare", "tune", "train", "evaluate", "register")


def data_version(paths: Paths) -> str:
    try:
        return paths.data_version_file.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"{paths.data_version_file}: missing; run the validate stage first") from None


def read_json(path: Path, stage: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing; run the {stage} stage first") from None


# ---- stages ---------------------------------------------------------------------------------


def pull(project: Project, cfg: Config, paths: Paths) -> list[Path]:
    with atomic_dir(paths.raw) as tmp:
        files = project.pull(cfg, tmp)
        if not files:
            raise RuntimeError(f"{project.name} pull produced no files")
    return [paths.raw / f.relative_to(tmp) for f in files]


def validate(project: Project, cfg: Config, paths: Paths):
    import mlflow

    from components.tracking import hash_files, stage_run
    from components.validate import ValidationFailed, run_checks, write_report

    try:
        result = run_checks(project.checks(cfg, paths.raw))
    except ValidationFailed as unreadable:  # a file that is not even a CSV: still reported and logged
        result = unreadable.result
    with atomic_dir(paths.validation) as tmp:
        write_report(result, tmp)
    version = hash_files(paths.raw) if result.success else None
    with stage_run(project.name, "validate", cfg, version):
        mlflow.log_artifacts(str(paths.validation), "validation")
        mlflow.log_metrics(
            {"validation/expectations": result.n_expectations, "validation/failures": len(result.failures)}
        )
        mlflow.set_tag("validation.success", str(result.success).lower())
    if not result.success:
        raise ValidationFailed(result)
    with atomic_dir(paths.validated) as tmp:
        shutil.copytree(paths.raw, tmp, dirs_exist_ok=True)
        (tmp / paths.data_version_file.name).write_text(version + "\n")
    return result


def prepare(project: Project, cfg: Config, paths: Paths) -> dict:
    data_version(paths)  # refuse unvalidated data
    with atomic_dir(paths.prepared) as tmp:
        summary = project.prepare(cfg, paths.validated, tmp)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def tune(project: Project, cfg: Config, paths: Paths):
    import mlflow

    from components.tracking import stage_run
    from components.train import make_trainer
    from components.tune import run_study

    version = data_version(paths)
    datamodule = project.datamodule(cfg, paths.prepared)
    section = cfg.project
    with stage_run(project.name, "tune", cfg, version) as run, atomic_dir(paths.tuned) as tmp:

        def objective_fit(params: dict, callbacks: list, trial_run_id: str) -> float:
            import lightning.pytorch as pl

            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            module = project.build_module(cfg, datamodule, params)
            trainer = make_trainer(
                section.train,
                tmp / "trial",
                max_epochs=section.tune.max_epochs,
                run_id=trial_run_id,
                callbacks=callbacks,
                enable_checkpointing=False,
            )
            trainer.fit(module, datamodule=datamodule)
            return float(trainer.early_stopping_callback.best_score)

        study_name = section.tune.study_name or f"{project.name}-{version[:12]}"
        result = run_study(
            objective_fit,
            lambda trial: project.search_space(cfg, trial),
            section.tune,
            study_name,
            tmp / "optuna.journal",
            cfg.seed,
        )
        shutil.rmtree(tmp / "trial", ignore_errors=True)
        mlflow.log_params({f"best.{k}": v for k, v in result.best_params.items()})
        mlflow.log_metrics(
            {"best/val/loss": result.best_value, "trials/complete": result.n_complete, "trials/pruned": result.n_pruned}
        )
        best = {
            "params": result.best_params,
            "value": result.best_value,
            "trial": result.best_trial,
            "study": result.study_name,
            "storage": result.storage.replace(str(tmp), str(paths.tuned)),
            "tune_run_id": run.info.run_id,
        }
        (tmp / "best_params.yaml").write_text(yaml.safe_dump(best, sort_keys=True))
    return result


def best_params(paths: Paths) -> dict:
    """The tuned hyper-parameters (empty when the tune stage has not run: the config's defaults hold)."""
    if not paths.best_params.exists():
        log.warning("%s not found: training with params.yaml defaults", paths.best_params)
        return {}
    return yaml.safe_load(paths.best_params.read_text())["params"]


def train(project: Project, cfg: Config, paths: Paths) -> dict:
    import mlflow

    from components.tracking import stage_run
    from components.train import fit

    version = data_version(paths)
    hparams = best_params(paths)
    datamodule = project.datamodule(cfg, paths.prepared)
    module = project.build_module(cfg, datamodule, hparams)
    with stage_run(project.name, "train", cfg, version) as run, atomic_dir(paths.model) as tmp:
        mlflow.log_params({f"tuned.{k}": v for k, v in hparams.items()})
        result = fit(module, datamodule, cfg.project.train, tmp / "checkpoints", cfg.seed, run.info.run_id)
        load_best_weights(module, result.best_checkpoint)
        project.export(cfg, module, paths.prepared, tmp)
        mlflow.log_artifact(str(result.best_checkpoint), "checkpoints")
        mlflow.log_metrics(
            {"best/val/loss": result.best_score, "train/seconds": result.seconds, "train/epochs": result.epochs}
        )
        import pandas as pd

        pd.DataFrame(result.history).to_csv(tmp / "history.csv", index=False)
        info = {
            "run_id": run.info.run_id,
            "best_val_loss": result.best_score,
            "epochs": result.epochs,
            "seconds": result.seconds,
            "hparams": hparams,
            "data_version": version,
        }
        (tmp / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_best_weights(module, checkpoint: Path) -> None:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])


def evaluate(project: Project, cfg: Config, paths: Paths):
    import pandas as pd

    from components.evaluate import log_evaluation, write_evaluation
    from components.tracking import stage_run

    info = read_json(paths.model / "run.json", "train")
    datamodule = project.datamodule(cfg, paths.prepared)
    module = project.load_module(cfg, paths.model)
    evaluation = project.evaluate(cfg, module, datamodule)
    history = pd.read_csv(paths.model / "history.csv")
    evaluation.tables["loss"] = history
    evaluation.figures["loss"] = loss_figure(history)
    with atomic_dir(paths.evaluation) as tmp:
        write_evaluation(evaluation, tmp)
    written = {"metrics": paths.evaluation / "metrics.json"}
    written.update({f"plots/{p.stem}": p for p in (paths.evaluation / "plots").glob("*.csv")})
    with stage_run(project.name, "evaluate", cfg, run_id=info["run_id"]):
        log_evaluation(evaluation, written)
    return evaluation


def loss_figure(history):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for column in ("train/loss", "val/loss"):
        if column in history:
            ax.plot(history["epoch"], history[column], marker="o", label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def register(project: Project, cfg: Config, paths: Paths):
    import mlflow

    from components.evaluate import read_metrics
    from components.monitor import log_reference, reference_profile
    from components.register import gate, load_python_model, log_pyfunc, model_card, write_decision
    from components.tracking import stage_run

    info = read_json(paths.model / "run.json", "train")
    metrics = read_metrics(paths.evaluation / "metrics.json")
    spec = project.pyfunc(paths.model)
    with stage_run(project.name, "register", cfg, run_id=info["run_id"]), atomic_dir(paths.registry) as tmp:
        card = model_card(
            project.name, project.description, project.limitations, info["data_version"], metrics, info["hparams"]
        )
        version = log_pyfunc(project.name, spec, card, code_paths=None)
        client = mlflow.MlflowClient()
        client.set_model_version_tag(project.name, version.version, "scifolio.data_version", info["data_version"])
        client.set_model_version_tag(project.name, version.version, "scifolio.profile", cfg.profile)
        # what the monitor will compare this version's traffic with, answered by the registered model itself
        registered = load_python_model(f"models:/{project.name}/{version.version}")
        log_reference(
            project.name,
            version.version,
            reference_profile(project, cfg, paths.prepared, registered),
            tmp / "reference",
        )
        decision = gate(
            project.name,
            version.version,
            project.primary_metric,
            cfg.project.register.margin,
            lambda python_model: project.score(python_model, cfg, paths.prepared),
        )
        write_decision(decision, tmp)
    return decision


def run(project: Project, cfg: Config, stage: str, paths: Paths):
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return globals()[stage](project, cfg, paths)
