"""The literature full profile on the real SciCite files, pulled from a loopback mirror, every stage.

params.yaml's full profile points at SciBERT's SciCite copy on GitHub; here the same files from
../shared are served from 127.0.0.1 and the recipe is shrunk (a scratch one-layer 32-wide BERT instead of MiniLM, one epoch)
so the real-data path (pull over HTTP, validation of 3,916 real rows, the leak and conflict rules,
WordPiece on train only, tune, train, evaluate, register) runs in about a minute.
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from components import stages
from components.config import load_config
from components.project import Paths
from pipelines.registry import get_project

pytestmark = pytest.mark.slow

SHRUNK = [
    "literature.data.limit=3000",
    "literature.model.encoder=scratch",  # the full recipe fine-tunes MiniLM: minutes per epoch on 2 cores  # the first 3,000 train rows (whole groups); dev (the test split) is all 916
    "literature.model.vocab_size=2000",
    "literature.model.hidden=32",
    "literature.model.layers=1",
    "literature.model.heads=2",
    "literature.model.max_len=48",
    "literature.train.max_epochs=1",
    "literature.train.batch_size=64",
    "literature.train.lr=3.0e-3",
    "literature.tune.n_trials=1",
    "literature.tune.max_epochs=1",
    "literature.monitor.reference_items=50",
]


def test_full_profile_on_real_scicite_from_a_loopback_mirror(repo_root, shared_data, tmp_path, monkeypatch, loopback):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    literature = get_project("literature")
    mirror = loopback(shared_data / "literature" / "scicite")
    cfg = load_config(
        "literature",
        literature.section,
        repo_root / "params.yaml",
        "full",
        [*SHRUNK, f"literature.data.scicite_dir={mirror}"],
    )
    assert cfg.model_name == "literature-intent" and cfg.project.data.source == "files"
    paths = Paths.of("literature", tmp_path / "data")
    for stage in stages.STAGES:
        stages.run(literature, cfg, stage, paths)

    texts = pd.read_parquet(paths.prepared / "texts.parquet")
    counts = texts["split"].value_counts().to_dict()
    assert counts["test"] == 916  # SciCite dev, every row: the split reported as test
    assert (
        2900 <= counts["train"] + counts["val"] <= 3100 and counts["val"] >= 250
    )  # whole groups up to ~3,000 rows; ~10 % val
    metrics = json.loads((paths.evaluation / "metrics.json").read_text())
    assert metrics["test"]["macro_f1"] > metrics["baseline"]["test"]["macro_f1"]  # beats the majority class
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("literature-intent", "champion")
    assert champion.tags["scifolio.profile"] == "full" and "monitor.reference" in champion.tags
    assert client.search_registered_models("name = 'literature-intent-demo'") == []
