"""Hedging, BioScope (CoNLL-2010 task 1): is a biomedical sentence uncertain (has a speculation cue)?

Raw files: `abstracts.xml` and `full_papers.xml`, pooled; no official split, so a seeded share of whole
documents (`data.test_fraction`; an abstract or a paper never sits on two sides) is the test split and
validation is carved from the rest, also by document. Metric of the literature: F1 of "uncertain".
"""

from __future__ import annotations

from pathlib import Path

from pipelines.literature.sources.bioscope import HEDGE_LABELS, read_bioscope, write_demo_bioscope
from pipelines.literature.tasks import Item, TaskSpec

FILES = ("abstracts.xml", "full_papers.xml")


def read(path: Path) -> list[Item]:
    # sentences outside any document id (none in the real files) are grouped by the file
    return [
        Item(r.text, r.label, f"{r.split}:{r.doc_id or ''}", r.split, i + 1)
        for i, r in enumerate(read_bioscope(Path(path)))
    ]


def write_demo(out: Path, rows: int, seed: int) -> list[Path]:
    # about five sentences a document; the "full papers" file is small, as the real one is
    write_demo_bioscope(out / FILES[0], n_docs=max(rows // 5, 6), seed=seed)
    write_demo_bioscope(out / FILES[1], n_docs=max(rows // 50, 2), seed=seed + 1)
    return [out / n for n in FILES]


SPEC = TaskSpec(
    name="hedging",
    labels=HEDGE_LABELS,
    dir_key="bioscope_dir",
    files=FILES,
    test_from="share",
    read=read,
    write_demo=write_demo,
    what="BioScope sentence hedging (certain / uncertain), CoNLL-2010 task 1",
    group_name="document (abstract or paper)",
    positive="uncertain",
)
