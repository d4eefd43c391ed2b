"""The contract test: every registered project, and a test project defined here, from pull to register.

Each project runs the real stages in-process on its demo profile shrunk to seconds (one epoch, one
trial, a small synthetic data set), the way lightning-hydra-template shrinks real configs. This is
the first test a new project must pass. The test project (tests/contract/tiny.py) has no monitoring
hooks and a maximised objective: it proves the stages follow the project's objective, and skip with a
message what the project does not support.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from components import stages
from components.config import load_config
from components.project import Paths, Unsupported, capabilities, check_contract, require
from pipelines.registry import PROJECTS, get_project
from tests.contract.tiny import TINY, UNTUNABLE_TINY

BUDGET_S = 60  # per project, on the 2-core CI machine

# what "shrunk" means for each project: the demo profile, one epoch, one trial, a little data
SHRINK = {
    "energy": [
        "energy.train.max_epochs=1",
        "energy.tune.n_trials=1",
        "energy.tune.max_epochs=1",
        "energy.data.demo_rows=1200",
    ],
    "medical": [
        "medical.train.max_epochs=1",
        "medical.tune.n_trials=1",
        "medical.tune.max_epochs=1",
        "medical.data.demo_patients=120",
        "medical.bootstrap=20",
        "medical.gradcam_images=1",
        "medical.monitor.reference_items=40",
    ],
    "literature": [
        "literature.train.max_epochs=1",
        "literature.tune.n_trials=1",
        "literature.tune.max_epochs=1",
        "literature.data.demo_rows=200",
        "literature.monitor.reference_items=40",
    ],
    "protein": [
        "protein.train.max_epochs=1",
        "protein.tune.n_trials=1",
        "protein.tune.max_epochs=1",
        "protein.data.demo_entries=18",
        "protein.monitor.reference_items=20",
    ],
    "art": [
        "art.train.max_epochs=1",
        "art.tune.n_trials=1",
        "art.tune.max_epochs=1",
        "art.data.demo_fluorescence=6",
        "art.data.demo_histology=4",
        "art.quality.encoder_epochs=1",
        "art.quality.test_samples=8",
        "art.monitor.reference_items=12",
    ],
    "tiny": ["tiny.train.max_epochs=3", "tiny.tune.n_trials=2", "tiny.tune.max_epochs=2"],
}
TINY_PARAMS = {
    "data": {"rows": 300, "separation": 2.0},
    "model": {"hidden": 8},
    "train": {"batch_size": 32, "lr": 0.05, "max_epochs": 20, "patience": 3},
    "tune": {"n_trials": 4, "max_epochs": 3, "pruner": "none"},
    "register": {"margin": 0.0},
}
TINY_STUDY = {"seeds": 2, "variants": {"wide": {"model.hidden": 16}, "narrow": {"model.hidden": 2}}}


def params_file(repo_root: Path, tmp_path: Path) -> Path:
    """params.yaml with the test project's section beside the real ones."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["tiny"] = TINY_PARAMS
    params["ablations"]["tiny"] = TINY_STUDY
    params["profiles"]["demo"]["tiny"] = {}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def plug_in(name: str):
    return TINY if name == "tiny" else get_project(name)


@pytest.mark.parametrize("name", [*PROJECTS, "tiny"])
def test_project_runs_pull_to_register_in_seconds(name, repo_root, tmp_path, store):
    project = plug_in(name)
    check_contract(project)
    cfg = load_config(name, project.section, params_file(repo_root, tmp_path), "demo", SHRINK[name])
    paths = Paths.of(name, tmp_path / "data")
    start = time.perf_counter()
    for stage in stages.STAGES:
        stages.run(project, cfg, stage, paths)
    elapsed = time.perf_counter() - start
    assert elapsed < BUDGET_S, f"{name}: pull to register took {elapsed:.0f} s (budget {BUDGET_S} s)"

    # the registry: the demo profile's own model, promoted because there is no champion yet
    decision = json.loads((paths.registry / "decision.json").read_text())
    task = getattr(cfg.project, "task", "")
    assert cfg.model_name == f"{name}-{task}-demo" if task else f"{name}-demo"
    assert decision["model"] == cfg.model_name
    assert decision["promoted"] and decision["reason"] == "no champion yet"
    assert decision["metric"] == project.objective.gate.name
    assert decision["source"] == project.objective.gate_source
    champion = store.get_model_version_by_alias(cfg.model_name, "champion")
    assert str(champion.version) == str(decision["version"])
    assert store.get_registered_model(cfg.model_name).description.startswith(project.description[:40])
    assert store.search_registered_models(f"name = '{name}'") == []  # nothing under the full profile's name

    # selection followed the project's objective, in its direction
    run_info = json.loads((paths.model / "run.json").read_text())
    assert run_info["select_metric"] == project.objective.select.name
    tuned = yaml.safe_load(paths.best_params.read_text())
    assert tuned["metric"] == project.objective.study.name
    assert tuned["direction"] == project.objective.study.direction

    # MLflow as users expect it: the model-training view, the data as the run's dataset input
    experiment = store.get_experiment_by_name(cfg.model_name)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    train_run = store.get_run(run_info["run_id"])
    inputs = train_run.inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [run_info["data_version"][:16]]

    # the monitoring reference exists exactly when the project is monitorable
    has_reference = "monitor.reference" in champion.tags
    assert has_reference == ("monitorable" in capabilities(project))


@pytest.mark.parametrize("name", [*PROJECTS, "tiny"])
def test_project_ablation_study_runs_shrunk(name, repo_root, tmp_path, store):
    """Each project's declared study is valid and runs: its first variant against base, 2 seeds, 1 epoch."""
    project = plug_in(name)
    params = params_file(repo_root, tmp_path)
    declared = load_config(name, project.section, params, "demo", SHRINK[name]).ablations
    first = (declared.run or list(declared.variants))[0]
    study = [f"ablations.{name}.seeds=2", f"ablations.{name}.max_epochs=1", f"ablations.{name}.run=[{first}]"]
    cfg = load_config(name, project.section, params, "demo", [*SHRINK[name], *study])
    paths = Paths.of(name, tmp_path / "data")
    for stage in ("pull", "validate", "prepare", "ablate"):
        stages.run(project, cfg, stage, paths)

    metrics = json.loads((paths.ablation / "metrics.json").read_text())
    assert metrics["metric"] == project.objective.select.name
    assert metrics["direction"] == project.objective.select.direction
    assert set(metrics["variants"]) == {"base", first}
    import pandas as pd

    runs = pd.read_csv(paths.ablation / "runs.csv")
    assert sorted(zip(runs["variant"], runs["seed"], strict=True)) == [
        (v, s) for v in sorted(["base", first]) for s in (42, 43)
    ]
    assert runs["score"].notna().all() and (runs["epochs"] <= 1).all()
    base = runs[runs["variant"] == "base"].set_index("seed")["score"]
    other = runs[runs["variant"] == first].set_index("seed")["score"]
    assert metrics["variants"][first]["diff"] == pytest.approx((other - base).mean())  # paired by seed
    assert f"| {first} |" in (paths.ablation / "table.md").read_text()

    # MLflow: one parent run of the study, one nested run per variant x seed, each tagged with its variant
    experiment = store.get_experiment_by_name(cfg.model_name)
    (parent,) = store.search_runs([experiment.experiment_id], "tags.`scifolio.stage` = 'ablate'")
    children = store.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted((c.data.tags["ablation.variant"], c.data.tags["ablation.seed"]) for c in children) == sorted(
        (v, str(s)) for v in ("base", first) for s in (42, 43)
    )
    assert {"ablation/table.md", "ablation/runs.csv", "ablation/metrics.json"} <= {
        a.path for a in store.list_artifacts(parent.info.run_id, "ablation")
    }


def test_a_maximised_objective_selects_the_best_epoch_and_trial(repo_root, tmp_path, store):
    """tiny maximises val/macro_f1: the checkpoint kept and the Optuna best are maxima, not minima."""
    cfg = load_config("tiny", TINY.section, params_file(repo_root, tmp_path), "demo", SHRINK["tiny"])
    paths = Paths.of("tiny", tmp_path / "data")
    for stage in stages.STAGES[:-1]:
        stages.run(TINY, cfg, stage, paths)
    tuned = yaml.safe_load(paths.best_params.read_text())
    trials = store.search_runs(
        [store.get_experiment_by_name(cfg.model_name).experiment_id], "tags.optuna.state = 'complete'"
    )
    values = [t.data.metrics["best/val/macro_f1"] for t in trials]
    assert len(values) == 2 and tuned["value"] == pytest.approx(max(values))
    import pandas as pd

    history = pd.read_csv(paths.model / "history.csv")
    best = json.loads((paths.model / "run.json").read_text())["best_score"]
    assert best == pytest.approx(history["val/macro_f1"].max())


def test_a_capability_the_project_lacks_is_skipped_with_one_line(repo_root, tmp_path, store, caplog):
    cfg = load_config("tiny", UNTUNABLE_TINY.section, params_file(repo_root, tmp_path), "demo", SHRINK["tiny"])
    paths = Paths.of("tiny", tmp_path / "data")
    for stage in ("pull", "validate", "prepare"):
        stages.run(UNTUNABLE_TINY, cfg, stage, paths)
    caplog.set_level("INFO", logger="scifolio.stages")
    assert stages.run(UNTUNABLE_TINY, cfg, "tune", paths) is None
    assert "tiny tune: skipped, the project is not tunable" in caplog.text
    assert yaml.safe_load(paths.best_params.read_text())["params"] == {}  # train uses params.yaml's values
    stages.run(UNTUNABLE_TINY, cfg, "train", paths)
    for command, capability in (("monitor", "monitorable"), ("replay", "replayable"), ("app", "app")):
        with pytest.raises(Unsupported, match=f"tiny {command}: skipped, the project is not {capability}"):
            require(UNTUNABLE_TINY, command)


def test_a_half_implemented_capability_is_a_contract_error():
    class HalfMonitored(type(UNTUNABLE_TINY)):
        def monitor_spec(self, python_model):  # without monitor_features / reference_requests
            raise AssertionError

    with pytest.raises(TypeError, match=r"capability 'monitorable' needs \['monitor_features', 'reference_requests'\]"):
        check_contract(HalfMonitored())


def test_a_plug_in_missing_a_core_hook_is_named():
    class NoScore:
        name, section, description, limitations = "broken", object, "", ""
        objective = TINY.objective

    with pytest.raises(TypeError, match=r"project 'broken' lacks \['pull', 'checks'"):
        check_contract(NoScore())
