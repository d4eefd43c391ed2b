"""Text drift for the literature model: features per text, the reference, and the replay streams.

A shrunk demo intent model is trained and registered once (in-process, a temporary MLflow store);
the tests then build feature tables through the project's own hooks and compare them with the
monitor's real decision rule (components/monitor.compare: K-S with Bonferroni + Evidently's
embedding domain classifier). The unshifted stream must not alarm; arXiv prose must.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components import monitor, stages
from components.config import load_config
from components.project import Paths
from components.register import load_python_model
from pipelines.literature import monitoring
from pipelines.registry import get_project

SHRUNK = [
    "literature.data.demo_rows=400",
    "literature.train.max_epochs=3",
    "literature.tune.n_trials=1",
    "literature.tune.max_epochs=1",
    "literature.monitor.reference_items=80",
]


@pytest.fixture(scope="module")
def trained(repo_root, tmp_path_factory):
    import os

    tmp = tmp_path_factory.mktemp("literature-monitor")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    try:
        project = get_project("literature")
        cfg = load_config("literature", project.section, repo_root / "params.yaml", "demo", SHRUNK)
        paths = Paths.of("literature", tmp / "data")
        for stage in stages.STAGES:
            stages.run(project, cfg, stage, paths)
        python_model = load_python_model(f"models:/{cfg.model_name}@champion")
        reference = monitor.reference_profile(project, cfg, paths, python_model)
        yield project, cfg, paths, python_model, reference
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def stream_features(project, cfg, paths, python_model, stream: str, n: int = 60, seed: int = 0) -> pd.DataFrame:
    requests = project.replay_requests(cfg, paths, stream, n, np.random.default_rng(seed))
    return monitor.features(project, python_model, ((r, python_model.predict(None, r)) for r in requests))


def test_features_are_one_row_per_text_with_the_spec_columns(trained):
    project, _, paths, python_model, reference = trained
    spec = project.monitor_spec(python_model)
    texts = pd.read_parquet(paths.prepared / "texts.parquet")
    assert len(reference) == min(80, int((texts["split"] == "val").sum()))  # validation texts, one row each
    columns = [*spec.tested, *spec.embeddings["encoder"]]
    assert list(reference.columns) == [*monitoring.TEXT_STATS, *spec.embeddings["encoder"], *spec.outputs]
    assert reference[columns].notna().all().all()
    p = reference[spec.outputs].sum(axis=1)
    assert np.allclose(p, 1.0, atol=1e-5)
    request = pd.DataFrame({"text": ["Gene expression zzqxv (Smith et al., 2001)."]})
    row = project.monitor_features(python_model, request, python_model.predict(None, request)).iloc[0]
    assert row["n_words"] == 6 and row["oov_share"] >= 1 / 6  # "zzqxv" is in no vocabulary


def test_unshifted_stream_does_not_alarm_and_arxiv_prose_does(trained):
    project, cfg, paths, python_model, reference = trained
    spec = project.monitor_spec(python_model)
    arxiv = stream_features(project, cfg, paths, python_model, "arxiv")
    _, same = monitor.compare(
        reference, stream_features(project, cfg, paths, python_model, "unshifted"), spec, cfg.project.monitor
    )
    _, shifted = monitor.compare(reference, arxiv, spec, cfg.project.monitor)
    assert same["drift"] is False, same["reasons"]
    assert shifted["drift"] is True
    # arXiv words are not the citation vocabulary (on the closed demo vocabulary the reference share is
    # a constant 0, which the monitor leaves untested: the embeddings and lengths carry the decision)
    assert arxiv["oov_share"].mean() > reference["oov_share"].mean() + 0.3


def test_a_stream_without_its_corpus_is_a_clear_error(trained):
    project, cfg, paths, _, _ = trained
    with pytest.raises(ValueError, match=r"stream 'decade' needs the PubMed corpus .*corpus/pubmed.parquet"):
        project.replay_requests(cfg, paths, "decade", 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"stream 'weekly' is not one of"):
        project.replay_requests(cfg, paths, "weekly", 10, np.random.default_rng(0))


def test_the_decade_stream_reads_the_earliest_decade_of_the_corpus(trained, tmp_path):
    project, cfg, _, _, _ = trained
    paths = Paths.of("literature", tmp_path)
    (paths.root / "corpus").mkdir(parents=True)
    abstracts = {
        1968: "Serum enzyme levels were measured in twelve patients. The method is described in detail.",
        1969: "Renal clearance of the drug was determined in dogs. Values were lower than in man.",
        1972: "Plasma cortisol rose after the injection. This effect was seen in every subject studied.",
        2015: "Deep sequencing revealed novel transcripts in tumour cells. These were validated by PCR.",
    }
    pd.DataFrame({"year": list(abstracts), "abstract": list(abstracts.values())}).to_parquet(
        paths.root / "corpus" / "pubmed.parquet"
    )
    texts = monitoring.earliest_decade_sentences(paths)
    assert texts == [
        "Serum enzyme levels were measured in twelve patients.",
        "The method is described in detail.",
        "Renal clearance of the drug was determined in dogs.",
        "Values were lower than in man.",
    ]  # 1960s only, cut by spaCy's sentencizer
