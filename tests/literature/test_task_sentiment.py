"""Citation sentiment (Athar): grouped folds by citing paper, the demo chain, the real corpus' counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.literature.data import assemble
from pipelines.literature.tasks import spec
from tests.literature.test_project import (
    SHARED,
    assert_groups_disjoint,
    config,
    demo_chain,
    real_prepare,
)

pytestmark = pytest.mark.usefixtures("store")  # every test writes MLflow runs into a temporary store

CORPUS = SHARED / "citation_sentiment"


def test_the_demo_trains_beats_the_majority_and_scores_like_evaluate(tmp_path):
    from pipelines.literature.project import LITERATURE
    from pipelines.literature.pyfunc import LiteratureModel

    cfg, paths, metrics = demo_chain(tmp_path, "sentiment")
    test, baseline = metrics["test"]["macro_f1"], metrics["baseline"]["test"]["macro_f1"]
    assert test > baseline + 0.3, f"macro-F1 {test:.3f} vs majority {baseline:.3f}"
    assert_groups_disjoint(paths)
    model = LiteratureModel.from_dir(paths.model)
    assert model.labels == ["objective", "positive", "negative"]
    assert LITERATURE.score(model, cfg, paths) == pytest.approx(test, abs=1e-9)


def test_folds_partition_the_citing_papers(tmp_path):
    from pipelines.literature.sources.labelled import write_demo_citation_sentiment

    raw = tmp_path / "raw"
    raw.mkdir()
    write_demo_citation_sentiment(raw / "complete_corpus.txt", n=200, seed=3)
    cfg = config(tmp_path, overrides=["literature.task=sentiment"])
    task, tests = spec("sentiment", cfg.project.data), []
    for fold in range(10):
        data = cfg.project.data.__class__(**{**vars(cfg.project.data), "fold": fold})
        roles = assemble(task, data, raw, seed=0).roles
        tests.append({u.group for u, role in roles if role == "test"})
        pool = {u.group for u, role in roles if role in ("train", "val")}
        assert not pool & tests[-1]
    assert all(not a & b for i, a in enumerate(tests) for b in tests[i + 1 :]), "a citing paper in two folds"
    assert sum(map(len, tests)) == len(set().union(*tests))


def test_the_real_corpus_pulls_validates_and_prepares(tmp_path: Path):
    if not (CORPUS / "complete_corpus.txt").is_file():
        pytest.fail(f"{CORPUS} is missing: Athar's corpus must sit in the shared data folder")
    paths, summary = real_prepare(tmp_path, "sentiment", [f"literature.data.sentiment_dir={CORPUS}"])
    counts = summary["counts"]
    # 8,736 rows; the majority rule resolves 79 conflicting texts -> 8,586 rows; 9 of them are PDF-extraction
    # dumps over 2,000 characters (dropped), 7 train rows repeat a test text (dropped)
    assert summary["conflicts_resolved"] == 79 and summary["too_long_dropped"] == 9
    assert summary["leaked_train_rows_dropped"] == 7
    assert sum(counts.values()) == 8586 - 9 - 7
    assert 0.08 * 8586 < counts["test"] < 0.12 * 8586  # one fold of ten
    assert set(summary["label_counts"]["test"]) == {"objective", "positive", "negative"}
    assert_groups_disjoint(paths)  # no citing paper in two of train / val / test
