"""Profiles never mix: a demo run after a full-profile registration leaves the real champion alone.

The full profile registers `energy` (here on the real ETTh1 from ../shared, shrunk to one epoch); the
demo profile registers `energy-demo`. The demo run overwrites data/energy/ (DVC rebuilds the stage
folders for whichever profile params.yaml names), but the full champion, its version count, its
reference profile and its inference log are untouched, and the demo's monitor writes elsewhere.
"""

from __future__ import annotations

import json

import mlflow
import pytest

from components import stages
from components.config import load_config
from components.project import Paths
from pipelines.registry import get_project

pytestmark = pytest.mark.slow

SHRUNK = [
    "energy.train.max_epochs=1",
    "energy.tune.n_trials=1",
    "energy.tune.max_epochs=1",
    "energy.window.seq_len=96",
    "energy.window.horizon=24",
    "energy.model.n_layers=1",
    "energy.monitor.reference_items=50",
]


def test_a_demo_run_after_a_full_registration_leaves_the_full_champion(repo_root, shared_data, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    energy = get_project("energy")
    paths = Paths.of("energy", tmp_path / "data")
    mirror = f"energy.data.ett_mirror={shared_data / 'energy'}"
    full = load_config("energy", energy.section, repo_root / "params.yaml", "full", [*SHRUNK, mirror])
    demo = load_config("energy", energy.section, repo_root / "params.yaml", "demo", SHRUNK)
    assert (full.model_name, demo.model_name) == ("energy", "energy-demo")

    for stage in stages.STAGES:
        stages.run(energy, full, stage, paths)
    champion = client.get_model_version_by_alias("energy", "champion")
    reference = champion.tags["monitor.reference"]
    log = tmp_path / "inference" / "energy" / f"v{champion.version}.jsonl"  # what `serve` had appended
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"status": 200, "inputs": None, "outputs": None}) + "\n")
    before = log.read_bytes()

    for stage in stages.STAGES:
        stages.run(energy, demo, stage, paths)
    demo_champion = client.get_model_version_by_alias("energy-demo", "champion")
    assert demo_champion.tags["scifolio.profile"] == "demo"
    after = client.get_model_version_by_alias("energy", "champion")
    assert (after.version, after.tags["monitor.reference"]) == (champion.version, reference)
    assert after.tags["scifolio.profile"] == "full"
    assert [v.version for v in client.search_model_versions("name = 'energy'")] == [champion.version]
    assert log.read_bytes() == before
    experiments = {e.name for e in client.search_experiments()}
    assert {"energy", "energy-demo"} <= experiments
    full_runs = client.search_runs([client.get_experiment_by_name("energy").experiment_id])
    stage_runs = [
        r for r in full_runs if "scifolio.stage" in r.data.tags
    ]  # validate, tune, train (evaluate and register log into train; trials nest in tune)
    assert len(stage_runs) == 3 and {r.data.tags["scifolio.profile"] for r in stage_runs} == {"full"}
