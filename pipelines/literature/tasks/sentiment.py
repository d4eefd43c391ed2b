"""Citation sentiment, Athar 2011: positive / negative / objective citation sentences (ACL Anthology).

One file (`complete_corpus.txt`), no official split: grouped stratified k-fold by citing paper (Athar used
10-fold cross-validation), so one citing paper's sentences never sit in two folds; the test split is
`data.fold`, validation is carved from the other folds, also by citing paper. The corpus' duplicated
sentences (one sentence citing several papers) come from one citing paper, hence stay in one fold.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.literature.sources.labelled import (
    SENTIMENT_LABELS,
    read_citation_sentiment,
    write_demo_citation_sentiment,
)
from pipelines.literature.tasks import Item, TaskSpec

CORPUS_FILE = "complete_corpus.txt"


def read(path: Path) -> list[Item]:
    return [Item(r.text, r.label, r.citing_paper_id, r.split, r.line) for r in read_citation_sentiment(Path(path))]


def write_demo(out: Path, rows: int, seed: int) -> list[Path]:
    write_demo_citation_sentiment(out / CORPUS_FILE, n=rows, seed=seed)
    return [out / CORPUS_FILE]


SPEC = TaskSpec(
    name="sentiment",
    labels=SENTIMENT_LABELS,
    dir_key="sentiment_dir",
    files=(CORPUS_FILE,),
    test_from="folds",
    read=read,
    write_demo=write_demo,
    what="Athar's citation sentiment (objective / positive / negative), grouped k-fold",
    group_name="citing paper",
)
