"""Trends on the demo corpus: BERTopic recovers the planted topics and the direction of their shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.literature.analysis.common import step_dir
from pipelines.literature.analysis.corpus import build_corpus
from pipelines.literature.analysis.trends import run, slopes, yearly_shares
from tests.literature.analysis_helpers import make_cfg


def test_shares_and_slopes_by_hand():
    years = [2000] * 4 + [2001] * 4 + [2002] * 4
    topics = [0, 0, 0, 1] + [0, 0, 1, 1] + [0, 1, 1, -1]  # topic 1 rises; the outlier (-1) is no topic
    shares = yearly_shares(years, topics, min_year_docs=3)
    assert np.allclose(shares.loc[2002].to_numpy(), [1 / 3, 2 / 3])
    rows = slopes(shares)
    assert rows[0]["topic"] == 1 and rows[0]["slope_per_year"] == pytest.approx((2 / 3 - 1 / 4) / 2)
    assert slopes(shares.iloc[:2]) == []  # two years: no slope


@pytest.mark.slow
def test_demo_topics_and_their_trends(tmp_path):
    cfg = make_cfg(tmp_path, ["literature.corpus.arxiv=none"])
    build_corpus(cfg, tmp_path / "data")
    summary = run(cfg, tmp_path / "data")["pubmed"]
    assert summary["topics_found"] >= 4 and summary["clusterer"] == "hdbscan"
    folder = step_dir(tmp_path / "data", "trends")
    words = {
        t["topic"]: t["words"]
        for t in __import__("json").loads((folder / "report.json").read_text())["pubmed"]["topics"]
    }

    def slope_of(word):
        [topic] = [t for t, w in words.items() if word in w.split()[:4]]
        return next(r["slope_per_year"] for r in summary["rising"] + summary["falling"] if r["topic"] == topic)

    # demo.py plants microglia rising and amyloid falling
    assert slope_of("microglia") > 0 > slope_of("amyloid")
    assert (folder / "pubmed_topic_shares.png").read_bytes()[:4] == b"\x89PNG"
    assigned = pd.read_parquet(folder / "pubmed_topics.parquet")
    assert len(assigned) == summary["papers"]
