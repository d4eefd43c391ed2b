"""Shared by the analysis tests: a config for a temporary data folder and MLflow store."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "literature"
SMALL_DEMO = ["literature.corpus.demo_pubmed=120", "literature.corpus.demo_arxiv=80"]


def make_cfg(tmp: Path, overrides=(), profile: str = "demo"):
    from components.config import load_config
    from pipelines.literature.project import LITERATURE

    overrides = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", *overrides]
    return load_config("literature", LITERATURE.section, REPO / "params.yaml", profile, overrides)
