"""The pipeline stages, written once for every project.

pull -> validate -> prepare -> tune -> train -> evaluate -> register

Each stage reads the previous stage's folder under data/<project>/ (through `Paths`), writes its own
folder through a temporary directory that is renamed into place only when the stage succeeded (a
failed stage never leaves an output that DVC or a later stage would take for complete), and logs to
the MLflow experiment `cfg.model_name` (`energy` for the full profile, `energy-demo` for the demo one).
A stage that needs a capability the project lacks (components/project.py) writes an output saying
so and logs one line, so that `dvc repro` goes on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import yaml

from components import manifest
from components.config import Config
from components.io import atomic_dir, atomic_write_text
from components.project import Paths, Project, Unsupported, capabilities, check_contract

log = logging.getLogger("scifolio.stages")

STAGES = ("pull", "validate", "prepare", "tune", "train", "evaluate", "register")
STUDIES = ("ablate",)  # stages beside the chain: read prepared data, never feed register (not in `all`)


def data_version(paths: Paths) -> str:
    """The validated data version, once raw/ is confirmed unchanged since validation."""
    return manifest.verify(paths.raw, paths.validated)


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
    return [paths.raw / Path(f).relative_to(tmp) for f in files]


def validate(project: Project, cfg: Config, paths: Paths):
    import mlflow

    from components.tracking import stage_run
    from components.validate import ValidationFailed, run_checks, write_report

    # whatever happens below, no earlier validation may stand for data that has not passed this one
    shutil.rmtree(paths.validated, ignore_errors=True)
    try:
        result = run_checks(project.checks(cfg, paths))
    except ValidationFailed as unreadable:  # a file that is not even a CSV: still reported and logged
        result = unreadable.result
    with atomic_dir(paths.validation) as tmp:
        write_report(result, tmp)
    files, version = manifest.build(paths.raw) if result.success else (None, None)
    with stage_run(cfg.model_name, "validate", cfg, version):
        mlflow.log_artifacts(str(paths.validation), "validation")
        mlflow.log_metrics(
            {"validation/expectations": result.n_expectations, "validation/failures": len(result.failures)}
        )
        mlflow.set_tag("validation.success", str(result.success).lower())
    if not result.success:
        raise ValidationFailed(result)
    with atomic_dir(paths.validated) as tmp:
        manifest.write(tmp, files, version)
    return result


def prepare(project: Project, cfg: Config, paths: Paths) -> dict:
    data_version(paths)  # refuse unvalidated or changed data
    with atomic_dir(paths.prepared) as tmp:
        summary = project.prepare(cfg, paths, tmp)
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def tune(project: Project, cfg: Config, paths: Paths):
    import mlflow

    from components.steps import fit_data
    from components.tracking import stage_run
    from components.train import make_trainer
    from components.tune import run_study

    version = data_version(paths)
    if "tunable" not in capabilities(project):  # train then uses params.yaml's values
        skipped = f"{project.name} tune: skipped, the project is not tunable (no search_space hook)"
        with atomic_dir(paths.tuned) as tmp:
            (tmp / "best_params.yaml").write_text(yaml.safe_dump({"params": {}, "skipped": skipped}))
        log.info(skipped)
        return None
    datamodule = project.datamodule(cfg, paths)
    section, objective = cfg.project, project.objective
    # one device per trial: trials run in parallel as several workers on one study (tune.storage), not as DDP
    # inside a trial, whose launcher would re-run this whole stage in every extra process
    one_device = dataclasses.replace(section.train, devices=1)
    with stage_run(cfg.model_name, "tune", cfg, version) as run, atomic_dir(paths.tuned) as tmp:

        def objective_fit(params: dict, callbacks: list, trial_run_id: str) -> float:
            import lightning.pytorch as pl

            from components.train import epoch_history

            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            module = project.build_module(cfg, datamodule, params)
            history = epoch_history()
            trainer = make_trainer(
                one_device,
                tmp / "trial",
                objective.select,
                max_epochs=section.tune.max_epochs,
                run_id=trial_run_id,
                callbacks=[*callbacks, history],
                enable_checkpointing=False,
            )
            trainer.fit(module, **fit_data(datamodule))
            return history.best(objective.study)

        study_name = section.tune.study_name or f"{cfg.model_name}-{version[:12]}"
        result = run_study(
            objective_fit,
            lambda trial: project.search_space(cfg, trial),
            section.tune,
            objective.study,
            study_name,
            tmp / "optuna.journal",
            cfg.seed,
        )
        shutil.rmtree(tmp / "trial", ignore_errors=True)
        mlflow.log_params({f"best.{k}": v for k, v in result.best_params.items()})
        mlflow.log_metrics(
            {
                f"best/{objective.study.name}": result.best_value,
                "trials/complete": result.n_complete,
                "trials/pruned": result.n_pruned,
            }
        )
        best = {
            "params": result.best_params,
            "metric": objective.study.name,
            "direction": objective.study.direction,
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


def train(project: Project, cfg: Config, paths: Paths, resume: bool = False) -> dict:
    """Train, export, log. The run's unfinished state lives in data/<project>/checkpoints/ (last.ckpt, best.ckpt
    and resume.json: the MLflow run id and what the run was trained on); `resume` continues from there, in the
    same MLflow run. That folder is no DVC output (nothing depends on it, `dvc repro` never sees it): it only
    exists between a crash and the resumed run, which removes it once data/<project>/model is in place."""
    import hashlib

    import lightning.pytorch as pl
    import mlflow
    import pandas as pd

    from components.tracking import log_dataset, stage_run
    from components.train import fit, is_ddp_worker

    version = data_version(paths)
    hparams = best_params(paths)
    # seeded before the module exists: its initial weights are drawn here, not in fit (which seeds again)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = project.datamodule(cfg, paths)
    module = project.build_module(cfg, datamodule, hparams)
    select = project.objective.select
    unfinished = paths.root / "checkpoints"
    last, state_file = unfinished / "last.ckpt", unfinished / "resume.json"
    # what must not change between the crash and the resume: the resolved params, the tuned values, the data
    recipe = json.dumps({"params": cfg.raw, "seed": cfg.seed, "hparams": hparams}, sort_keys=True, default=str)
    fingerprint = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    resuming = resume and last.is_file() and state_file.is_file()
    if is_ddp_worker():
        # rank > 0 under DDP (train.devices > 1): Lightning's launcher re-ran this command to start this
        # process. It joins rank 0's Trainer and trains its shard; no MLflow run, no file, no output here,
        # so a DDP run logs one run and writes one model (tests/distributed/test_ddp.py)
        fit(module, datamodule, cfg.project.train, unfinished, select, cfg.seed, None, last, resuming)
        return {}
    if resume and not resuming:
        log.info("%s train --resume: no checkpoint in %s, training from the start", project.name, unfinished)
    if resuming:
        saved = json.loads(state_file.read_text())
        if (saved["data_version"], saved["fingerprint"]) != (version, fingerprint):
            raise RuntimeError(
                f"{last} was trained on other data or params (data {saved['data_version'][:12]}, params "
                f"{saved['fingerprint']}; now {version[:12]}, {fingerprint}): train without --resume to start over"
            )
    else:
        shutil.rmtree(unfinished, ignore_errors=True)  # an older crash's state would mix into this run
    run_id = saved["run_id"] if resuming else None
    with stage_run(cfg.model_name, "train", cfg, version, run_id=run_id) as run, atomic_dir(paths.model) as tmp:
        if resuming:
            mlflow.set_tag("scifolio.resumed", "true")  # metrics after the last checkpoint are logged twice
        else:
            log_dataset(cfg, paths, version)
            mlflow.log_params({f"tuned.{k}": v for k, v in hparams.items()})
            unfinished.mkdir(parents=True, exist_ok=True)
            state = {"run_id": run.info.run_id, "data_version": version, "fingerprint": fingerprint}
            atomic_write_text(state_file, json.dumps(state, indent=2) + "\n")
        result = fit(
            module, datamodule, cfg.project.train, unfinished, select, cfg.seed, run.info.run_id, last, resuming
        )
        best = tmp / "checkpoints" / "best.ckpt"  # the model folder keeps its own copy, as before
        best.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(result.best_checkpoint, best)
        load_best_weights(module, best)
        project.export(cfg, module, paths, tmp)
        mlflow.log_artifact(str(best), "checkpoints")
        mlflow.log_metrics(
            {f"best/{select.name}": result.best_score, "train/seconds": result.seconds, "train/epochs": result.epochs}
        )
        pd.DataFrame(result.history).to_csv(tmp / "history.csv", index=False)
        info = {
            "run_id": run.info.run_id,
            "select_metric": select.name,
            "best_score": result.best_score,
            "epochs": result.epochs,
            "seconds": result.seconds,  # with --resume: the resumed part only
            "processes": result.processes,  # DDP world size (train.devices)
            "hparams": hparams,
            "data_version": version,
        }
        (tmp / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(unfinished, ignore_errors=True)  # finished: nothing left to resume
    return info


def load_best_weights(module, checkpoint: Path) -> None:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])


def evaluate(project: Project, cfg: Config, paths: Paths):
    import pandas as pd

    from components.evaluate import log_evaluation, loss_figure, write_evaluation
    from components.tracking import stage_run

    info = read_json(paths.model / "run.json", "train")
    datamodule = project.datamodule(cfg, paths)
    net = project.load_module(cfg, paths)
    evaluation = project.evaluate(cfg, net, datamodule, paths)
    history = pd.read_csv(paths.model / "history.csv")
    evaluation.tables["loss"] = history
    evaluation.figures["loss"] = loss_figure(history)
    with atomic_dir(paths.evaluation) as tmp:
        write_evaluation(evaluation, tmp)
    written = {"metrics": paths.evaluation / "metrics.json"}
    written.update({f"plots/{p.stem}": p for p in (paths.evaluation / "plots").glob("*.csv")})
    with stage_run(cfg.model_name, "evaluate", cfg, run_id=info["run_id"]):
        log_evaluation(evaluation, written)
    return evaluation


def register(project: Project, cfg: Config, paths: Paths):
    from components.evaluate import read_metrics
    from components.register import register_version
    from components.tracking import stage_run

    info = read_json(paths.model / "run.json", "train")
    metrics = read_metrics(paths.evaluation / "metrics.json")
    spec = project.pyfunc(cfg, paths)
    with stage_run(cfg.model_name, "register", cfg, run_id=info["run_id"]), atomic_dir(paths.registry) as tmp:
        return register_version(project, cfg, paths, spec, info, metrics, tmp)


def ablate(project: Project, cfg: Config, paths: Paths):
    from components.ablate import run_study

    return run_study(project, cfg, paths)


def run(project: Project, cfg: Config, stage: str, paths: Paths, **options):
    """Run one stage; `options` are the stage's own keyword arguments (train: resume)."""
    if stage not in (*STAGES, *STUDIES):
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join((*STAGES, *STUDIES))}")
    check_contract(project)
    return globals()[stage](project, cfg, paths, **options)


__all__ = ["STAGES", "STUDIES", "Unsupported", "run", "data_version", *STAGES, *STUDIES]
