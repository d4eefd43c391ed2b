"""Hedging (BioScope, CoNLL-2010 task 1): the demo chain with uncertain-class F1, the real corpus' split."""

from __future__ import annotations

import pytest

from tests.literature.test_project import (
    SHARED,
    assert_groups_disjoint,
    demo_chain,
    real_prepare,
)

pytestmark = pytest.mark.usefixtures("store")  # every test writes MLflow runs into a temporary store

BIOSCOPE = SHARED / "bioscope"


def test_the_demo_trains_beats_the_majority_and_logs_uncertain_f1(tmp_path):
    import pandas as pd

    from pipelines.literature.pyfunc import LiteratureModel

    _, paths, metrics = demo_chain(tmp_path, "hedging", ["literature.train.max_epochs=8"])
    test, baseline = metrics["test"], metrics["baseline"]["test"]
    assert baseline["uncertain_f1"] == 0.0  # the majority class is "certain"
    assert test["uncertain_f1"] > 0.6 and test["macro_f1"] > baseline["macro_f1"] + 0.3
    assert_groups_disjoint(paths)
    answer = LiteratureModel.from_dir(paths.model).predict(
        None, pd.DataFrame({"text": ["These results suggest that IL-2 may regulate STAT3."]})
    )
    assert list(answer.columns) == ["label", "p_certain", "p_uncertain"]


def test_the_real_corpus_pulls_validates_and_prepares(tmp_path):
    if not (BIOSCOPE / "abstracts.xml").is_file():
        pytest.fail(f"{BIOSCOPE} is missing: BioScope must sit in the shared data folder")
    paths, summary = real_prepare(tmp_path, "hedging", [f"literature.data.bioscope_dir={BIOSCOPE}"])
    counts = summary["counts"]
    # 11,871 + 2,670 sentences; 45 train/val sentences repeat a test sentence (dropped)
    assert summary["leaked_train_rows_dropped"] == 45
    assert sum(counts.values()) == 11871 + 2670 - 45
    assert 0.2 * (11871 + 2670) <= counts["test"] < 0.2 * (11871 + 2670) + 600  # whole documents
    uncertain = sum(summary["label_counts"][s].get("uncertain", 0) for s in counts)
    assert 2500 < uncertain <= 2101 + 519
    assert_groups_disjoint(paths)  # no abstract or paper on two sides
