"""Readers of the sequential-sentence sets: abstracts whose every sentence has a rhetorical label.

- CSAbstruct (computer-science abstracts; background / objective / method / result / other): JSON
  lines {"abstract_id", "sentences", "labels", "confs"}. Every abstract_id in the released files is 0,
  so a record names its abstract by split and line ("train-17"), which is unique and stable.
- The PubMed-RCT text format, which NICTA-PIBOSO (as cleaned for HSLN) shares: '###<id>' opens an
  abstract, then one '<label>\\t<sentence>' line per sentence, a blank line between abstracts. The label
  sets differ (NICTA: background, population, intervention, outcome, study design, other; PubMed RCT:
  BACKGROUND, OBJECTIVE, METHODS, RESULTS, CONCLUSIONS), so `read_rct_format` takes the set to check.

One record per sentence (flat, like every labelled reader); `by_abstract` groups them back into
abstracts in order, the unit a sequential classifier sees. File-or-folder input, `split`/`line` and the
errors are those of `labelled.py`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from components.io import atomic_write
from pipelines.literature.sources.labelled import (
    LabelledDataError,
    check_label,
    check_text,
    data_files,
    json_lines,
    split_name,
)

CSABSTRUCT_LABELS = ("background", "objective", "method", "result", "other")
NICTA_LABELS = ("background", "population", "intervention", "outcome", "study design", "other")
PUBMED_RCT_LABELS = ("BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS", "CONCLUSIONS")


@dataclass
class AbstractSentence:
    abstract_id: str  # PMID in the RCT format; "<split>-<line>" for CSAbstruct
    sentence_index: int  # 0-based position in the abstract
    text: str  # as in the file (NICTA's sentences are tokenised: "( 78 per cent )")
    label: str
    split: str
    line: int  # the sentence's line (RCT format) or the abstract's (CSAbstruct)
    confidence: float | None = None  # CSAbstruct's annotator agreement ("confs")


def by_abstract(sentences: Sequence[AbstractSentence]) -> list[list[AbstractSentence]]:
    """Sentences grouped into their abstracts (split and id), in file order."""
    groups: dict[tuple[str, str], list[AbstractSentence]] = {}
    for sentence in sentences:
        groups.setdefault((sentence.split, sentence.abstract_id), []).append(sentence)
    return list(groups.values())


# ---- CSAbstruct -------------------------------------------------------------------------------------


def read_csabstruct(path: Path) -> list[AbstractSentence]:
    records = []
    for file in data_files(path, (".jsonl", ".json"), "CSAbstruct"):
        split = split_name(file)
        for number, row in json_lines(file):
            where = f"{file}:{number}"
            sentences, labels, confs = row.get("sentences"), row.get("labels"), row.get("confs")
            if not isinstance(sentences, list) or not isinstance(labels, list):
                raise LabelledDataError(f"{where}: missing column: 'sentences' and 'labels' must be lists")
            if not sentences:
                raise LabelledDataError(f"{where}: empty text: an abstract without sentences")
            if len(labels) != len(sentences) or (confs is not None and len(confs) != len(sentences)):
                raise LabelledDataError(
                    f"{where}: malformed line: {len(sentences)} sentences, {len(labels)} labels"
                    + ("" if confs is None else f", {len(confs)} confs")
                )
            if confs is not None and not all(isinstance(c, (int, float)) for c in confs):
                raise LabelledDataError(f"{where}: malformed line: 'confs' must be numbers")
            for index, (text, label) in enumerate(zip(sentences, labels)):
                at = f"{where}: sentence {index}"
                records.append(
                    AbstractSentence(
                        abstract_id=f"{split}-{number}",
                        sentence_index=index,
                        text=check_text(text, at),
                        label=check_label(label, CSABSTRUCT_LABELS, at),
                        split=split,
                        line=number,
                        confidence=None if confs is None else float(confs[index]),
                    )
                )
    return records


# ---- the PubMed-RCT / NICTA text format ------------------------------------------------------------


def read_rct_format(path: Path, labels: Sequence[str]) -> list[AbstractSentence]:
    """'###id' / 'label<TAB>sentence' / blank-line files: pass NICTA_LABELS or PUBMED_RCT_LABELS."""
    records: list[AbstractSentence] = []
    for file in data_files(path, (".txt",), "PubMed-RCT format"):
        split = split_name(file)
        seen: set[str] = set()
        abstract_id, index, opened_at = None, 0, 0
        with open(file, encoding="utf-8", newline="") as f:
            for number, raw in enumerate(f, start=1):
                line = raw.rstrip("\r\n")  # CRLF copies exist; the sentence's own spaces are kept
                where = f"{file}:{number}"
                if not line.strip():
                    if abstract_id is not None and index == 0:
                        raise LabelledDataError(
                            f"{file}:{opened_at}: empty text: abstract {abstract_id} has no sentences"
                        )
                    abstract_id = None  # a blank line closes the abstract
                    continue
                if line.startswith("###"):
                    if abstract_id is not None and index == 0:
                        raise LabelledDataError(
                            f"{file}:{opened_at}: empty text: abstract {abstract_id} has no sentences"
                        )
                    abstract_id, index, opened_at = line[3:].strip(), 0, number
                    if not abstract_id:
                        raise LabelledDataError(f"{where}: malformed line: '###' without an abstract id")
                    if abstract_id in seen:
                        raise LabelledDataError(f"{where}: abstract {abstract_id} appears twice in this file")
                    seen.add(abstract_id)
                    continue
                if abstract_id is None:
                    raise LabelledDataError(f"{where}: malformed line: a sentence outside an abstract (no ###id above)")
                label, tab, text = line.partition("\t")
                if not tab:
                    raise LabelledDataError(f"{where}: malformed line: expected '<label><TAB><sentence>'")
                check_label(label, labels, where)
                records.append(AbstractSentence(abstract_id, index, check_text(text, where), label, split, number))
                index += 1
        if abstract_id is not None and index == 0:
            raise LabelledDataError(f"{file}:{opened_at}: empty text: abstract {abstract_id} has no sentences")
    return records


def read_nicta(path: Path) -> list[AbstractSentence]:
    return read_rct_format(path, NICTA_LABELS)


# ---- demo generators -------------------------------------------------------------------------------
# One phrasing per rhetorical role, in the order abstracts usually follow, so a demo model can learn.

_ROLE_TEMPLATES = {
    "background": "{t} remains a common problem in {f} .",
    "objective": "We aim to understand how {t} affects {f} .",
    "method": "We trained a model on {n} examples of {t} drawn from {f} .",
    "result": "The model improved accuracy on {t} by {n} per cent .",
    "other": "Code and data for {t} are available online .",
    "population": "{n} patients with {t} were recruited from {f} clinics .",
    "intervention": "Patients received {t} therapy twice daily for {n} weeks .",
    "outcome": "{t} fell by {n} per cent compared with placebo .",
    "study design": "This was a randomised double-blind trial of {t} .",
    "BACKGROUND": "{t} remains a common problem in {f} .",
    "OBJECTIVE": "To assess whether {t} improves outcomes in {f} .",
    "METHODS": "{n} patients were randomised to {t} or placebo .",
    "RESULTS": "{t} reduced mortality by {n} per cent ( p = 0.0{n} ) .",
    "CONCLUSIONS": "{t} should be considered for patients in {f} .",
}
_TOPICS = ["sepsis", "asthma", "graph parsing", "citation intent", "hypertension", "protein folding"]
_FIELDS = ["primary care", "intensive care", "natural language processing", "information retrieval"]


def _abstract(rng: random.Random, labels: Sequence[str]) -> list[tuple[str, str]]:
    roles = [labels[0], *rng.sample(list(labels[1:]), k=min(len(labels) - 1, rng.randint(2, 4)))]
    roles.sort(key=list(labels).index)  # abstracts run background -> ... -> outcome/result
    topic, fld = rng.choice(_TOPICS), rng.choice(_FIELDS)
    texts = [_ROLE_TEMPLATES[role].format(t=topic, f=fld, n=rng.randint(2, 90)) for role in roles]
    return [(role, text[0].upper() + text[1:]) for role, text in zip(roles, texts)]


def write_demo_csabstruct(
    path: Path,
    n_abstracts: int = 10,  # about 40 sentences: every label several times, read in milliseconds
    seed: int = 0,  # the same file every run
) -> list[AbstractSentence]:
    rng, path, out, records = random.Random(seed), Path(path), [], []
    split = split_name(path)
    for number in range(1, n_abstracts + 1):
        pairs = _abstract(rng, CSABSTRUCT_LABELS)
        confs = [round(rng.uniform(0.4, 1.0), 4) for _ in pairs]
        row = {"abstract_id": 0, "sentences": [t for _, t in pairs], "labels": [r for r, _ in pairs], "confs": confs}
        out.append(json.dumps(row))
        for index, ((role, text), conf) in enumerate(zip(pairs, confs)):
            records.append(AbstractSentence(f"{split}-{number}", index, text, role, split, number, conf))
    atomic_write(path, "\n".join(out) + "\n")
    return records


def write_demo_rct_format(
    path: Path,
    n_abstracts: int = 10,  # about 40 sentences, as for CSAbstruct
    seed: int = 0,  # the same file every run
    labels: Sequence[str] = NICTA_LABELS,  # the set of the file on disk; PUBMED_RCT_LABELS for PubMed RCT
) -> list[AbstractSentence]:
    rng, path, out, records = random.Random(seed), Path(path), [], []
    split = split_name(path)
    for k in range(n_abstracts):
        abstract_id = str(10_000_000 + k * 7919)  # PMID-like
        out.append(f"###{abstract_id}")
        for index, (role, text) in enumerate(_abstract(rng, labels)):
            out.append(f"{role}\t{text}")
            records.append(AbstractSentence(abstract_id, index, text, role, split, len(out)))
        out.append("")  # the real files end each abstract, the last one too, with a blank line
    atomic_write(path, "\n".join(out) + "\n")
    return records
