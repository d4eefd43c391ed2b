"""Rhetorical roles of abstract sentences (sequential sentence classification, Cohan et al. 2019).

Two corpora (`data.roles_corpus`): CSAbstruct (JSON lines, computer science) and NICTA-PIBOSO in the
PubMed-RCT text format (medicine). The official dev file is the test split; validation is carved from
train by abstract. A whole abstract is one model input (see data.encode_abstracts), so the group is the
abstract, and the rules (conflicts, leak) compare whole abstracts: one sentence ("Code is available
online.") can rightly have different roles in different abstracts.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.literature.sources.abstract_sentences import (
    CSABSTRUCT_LABELS,
    NICTA_LABELS,
    read_csabstruct,
    read_nicta,
    write_demo_csabstruct,
    write_demo_rct_format,
)
from pipelines.literature.tasks import Item, TaskSpec


def _items(records) -> list[Item]:
    return [Item(r.text, r.label, f"{r.split}:{r.abstract_id}", r.split, r.line, r.sentence_index) for r in records]


def read_cs(path: Path) -> list[Item]:
    return _items(read_csabstruct(Path(path)))


def read_rct(path: Path) -> list[Item]:
    return _items(read_nicta(Path(path)))


def _demo(writer, names: tuple[str, str]):
    def write(out: Path, rows: int, seed: int) -> list[Path]:
        # about four sentences an abstract; dev a fifth of train, drawn with another seed
        writer(out / names[0], n_abstracts=max(rows // 4, 10), seed=seed)
        writer(out / names[1], n_abstracts=max(rows // 20, 5), seed=seed + 1)
        return [out / n for n in names]

    return write


CS_FILES, NICTA_FILES = ("train.jsonl", "dev.jsonl"), ("train_clean.txt", "dev_clean.txt")
SPECS = {
    "csabstruct": TaskSpec(
        name="roles",
        labels=CSABSTRUCT_LABELS,
        dir_key="csabstruct_dir",
        files=CS_FILES,
        test_from="file",
        read=read_cs,
        write_demo=_demo(write_demo_csabstruct, CS_FILES),
        what="CSAbstruct sentence roles (background / objective / method / result / other)",
        group_name="abstract",
        sequential=True,
    ),
    "nicta": TaskSpec(
        name="roles",
        labels=NICTA_LABELS,
        dir_key="nicta_dir",
        files=NICTA_FILES,
        test_from="file",
        read=read_rct,
        write_demo=_demo(write_demo_rct_format, NICTA_FILES),
        what="NICTA-PIBOSO sentence roles (background / population / intervention / outcome / study design / other)",
        group_name="abstract",
        sequential=True,
    ),
}
