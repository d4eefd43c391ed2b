"""The recommender on the demo corpus: MiniLM + faiss beats a random ranking by a margin on the same queries,
the saved index answers text, id and library queries, and bad ids are refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.literature.analysis.common import AnalysisError, step_dir
from pipelines.literature.analysis.corpus import build_corpus
from pipelines.literature.analysis.recommend import Recommender, informative_labels, library_vector, ranked, run
from tests.literature.analysis_helpers import make_cfg


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recommend")
    sizes = ["literature.corpus.demo_pubmed=80", "literature.corpus.demo_arxiv=60"]
    cfg = make_cfg(tmp, [*sizes, "literature.analysis.n_queries=40", "literature.analysis.n_libraries=30"])
    build_corpus(cfg, tmp / "data")
    return cfg, tmp, run(cfg, tmp / "data")


def test_minilm_beats_random_by_a_margin_on_both_corpora(demo):
    _, _, results = demo
    for name in ("pubmed", "arxiv"):
        r = results[name]
        assert r["queries"] == 40 and r["libraries"] == 30
        # five topics: chance is ~0.3; MiniLM must be far above it, and above random by 0.3 at least
        assert r["minilm"]["precision_at_10"] >= r["random"]["precision_at_10"] + 0.3, r
        assert r["tfidf"]["precision_at_10"] >= r["random"]["precision_at_10"] + 0.3, r
        assert abs(r["random"]["precision_at_10"] - r["chance_precision"]) < 0.15  # random is at chance
        assert r["minilm"]["mrr"] > r["random"]["mrr"]


def test_outputs_and_mlflow_metrics(demo):
    import mlflow

    _, tmp, _ = demo
    folder = step_dir(tmp / "data", "recommend")
    for name in ("pubmed", "arxiv"):
        assert (folder / f"{name}.faiss").is_file()
        assert len(json.loads((folder / f"{name}_ids.json").read_text())) > 50
    assert "TF-IDF" in (folder / "report.md").read_text()
    runs = mlflow.search_runs(experiment_names=["literature-analysis-demo"])
    row = runs[runs["tags.mlflow.runName"] == "analysis-recommend"].iloc[0]
    assert row["metrics.recommend/pubmed/precision_at_10"] > row["metrics.recommend/pubmed/random/precision_at_10"]
    assert "metrics.recommend/pubmed/tfidf/precision_at_10" in runs.columns


def test_saved_index_answers_text_id_and_library_queries(demo):
    cfg, tmp, _ = demo
    rec = Recommender(step_dir(tmp / "data", "recommend"), "pubmed")
    hits = rec.search_text("microglia inflammation cytokines TREM2", k=5)
    assert len(hits) == 5 and hits["score"].is_monotonic_decreasing
    assert hits["venue"].isin(["Journal of Neuroinflammation", "Glia"]).sum() >= 3  # the microglia journals
    first = rec.papers["id"].iloc[0]
    like = rec.similar([first], k=5)
    assert first not in like["id"].tolist() and len(like) == 5
    library = rec.papers["id"].iloc[:3].tolist()
    out = rec.similar(library, k=10)
    assert not set(library) & set(out["id"])  # a library's papers are never recommended back
    with pytest.raises(AnalysisError, match=r"unknown paper id\(s\) \['nope'\]"):
        rec.similar(["nope"])
    with pytest.raises(AnalysisError, match="empty"):
        rec.search_text("  ")


def test_helpers():
    v = np.array([[1, 0], [0, 1]], dtype="float32")
    assert np.allclose(np.linalg.norm(library_vector(v)), 1.0)
    assert ranked(np.array([0.1, 0.9, 0.5]), {1}).tolist() == [2, 0]
    labels = informative_labels([["Humans", "Mice"], ["Humans"], ["Humans", "Tau"]], max_share=0.5)
    assert labels == [{"Mice"}, set(), {"Tau"}]  # "Humans" is on every paper: it tells nothing


def test_missing_corpus_names_the_file(tmp_path):
    with pytest.raises(AnalysisError, match=r"pubmed.parquet: missing; run .* corpus"):
        run(make_cfg(tmp_path), tmp_path / "data")
