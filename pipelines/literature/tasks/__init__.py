"""The four tasks of the literature plug-in, each one a `TaskSpec`: labels, raw files, reader, demo writer, split rule.

Everything else (the rules, the GX checks, the tokenizer, the network, the module, the metrics, the served
model) is shared and reads the spec; `spec(task, data)` is the one place a hook asks which task it serves.

Split rules (`test_from`):
- "file": the second raw file is the test split (SciCite dev, CSAbstruct / NICTA dev); validation is
  carved from the first by group.
- "folds": one file, grouped stratified k-fold (Athar: no official split); the test split is fold
  `data.fold`, validation is carved from the other folds by group.
- "share": every file pooled; a seeded share of whole groups (`data.test_fraction`) is the test split
  (BioScope: by abstract or paper), validation carved from the rest by group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Item:
    """One labelled text of any task, as the shared rules and splits see it."""

    text: str
    label: str
    group: str  # the unit a split keeps whole: citing paper, abstract, document (or the text itself)
    split: str  # the raw file's stem (resolve_conflicts reports (split, line))
    line: int
    order: int = 0  # the sentence's position in its abstract (roles)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    labels: tuple[str, ...]  # class index = position
    dir_key: str  # the `literature.data` key naming the real folder or URL mirror
    files: tuple[str, ...]  # raw file names; the first is train (or the whole set)
    test_from: str  # "file" | "folds" | "share" (see the module docstring)
    read: Callable[[Path], list[Item]]  # one raw file (or the held-out file) -> items, bad input raises naming it
    write_demo: Callable[[Path, int, int], list[Path]]  # (out folder, rows, seed) -> the files, same names
    what: str  # one line: the corpus and what is predicted
    group_name: str  # what `group` is, for the summary
    sequential: bool = False  # roles: an abstract's sentences are classified together ([SEP] read-out)
    positive: str | None = None  # hedging: the class whose F1 the literature reports


def spec(task: str, data) -> TaskSpec:
    """The spec of `task` (roles: of `data.roles_corpus`); heavy readers are imported by the task modules only."""
    if task == "intent":
        from pipelines.literature.tasks.intent import SPEC
    elif task == "sentiment":
        from pipelines.literature.tasks.sentiment import SPEC
    elif task == "roles":
        from pipelines.literature.tasks.roles import SPECS

        SPEC = SPECS[data.roles_corpus]
    elif task == "hedging":
        from pipelines.literature.tasks.hedging import SPEC
    else:
        raise ValueError(f"literature.task {task!r} is not intent, sentiment, roles or hedging")
    return SPEC
