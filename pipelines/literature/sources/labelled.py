"""Readers of the labelled citation sets, and what they share with the other labelled readers.

- SciCite citation intent (background / method / result) in the three formats its copies come in:
  the SciBERT JSON lines ({"text", "label", "metadata"}), AllenAI's original JSON lines ({"string",
  "label", "sectionName", "citingPaperId", ...}) and the CSV of all original training rows
  (string,label,label_confidence; strings may span lines): `read_scicite` tells them apart itself.
- Athar's citation sentiment corpus (positive / negative / objective): tab-separated, CRLF, no header,
  citation texts CSV-quoted ("" inside); `read_citation_sentiment`.
- `resolve_conflicts`: the same text with different labels (Athar has 79 such texts) resolved by one
  documented rule, with the list of conflicts returned for the validation report.

Every reader takes a file or a folder (each data file in it, by name) so that the official test splits,
kept outside the repository, load by path in the same format. Each record names its `split` (the file's
stem: train, dev, test) and `line`; bad input raises LabelledDataError naming the file, line and reason.
The sequence sets are in `abstract_sentences.py`, BioScope in `bioscope.py`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.io import atomic_write


class LabelledDataError(ValueError):
    """A labelled file that breaks its format; the message starts with `<file>:<line>:`."""


def data_files(path: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """`path` itself, or the files in folder `path` ending in one of `suffixes`, by name (not recursive)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LabelledDataError(f"{path}: no such file or folder ({what})")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(tuple(suffixes)))
    if not files:
        raise LabelledDataError(f"{path}: no {what} files ({', '.join(suffixes)}) in this folder")
    return files


def split_name(file: Path) -> str:
    """The split a file holds, from its name: train.txt -> train, dev_clean.txt -> dev_clean."""
    return Path(file).name.split(".")[0]


def check_label(label: Any, allowed: Sequence[str], where: str) -> str:
    if label not in allowed:
        raise LabelledDataError(f"{where}: unknown label {label!r} (expected one of {', '.join(allowed)})")
    return label


def check_text(text: Any, where: str, name: str = "text") -> str:
    if not isinstance(text, str):
        raise LabelledDataError(f"{where}: {name} is missing or not a string")
    if not text.strip():
        raise LabelledDataError(f"{where}: empty {name}")
    return text


def json_lines(file: Path) -> Iterable[tuple[int, dict]]:
    """(line number, object) per non-blank line; a line that is not a JSON object is refused."""
    with open(file, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)  # SciCite's original files write NaN for missing spans: json accepts it
            except json.JSONDecodeError as err:
                raise LabelledDataError(f"{file}:{number}: malformed line: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise LabelledDataError(f"{file}:{number}: malformed line: expected a JSON object")
            yield number, row


# ---- SciCite ----------------------------------------------------------------------------------------

SCICITE_LABELS = ("background", "method", "result")
SCICITE_SUFFIXES = (".txt", ".jsonl", ".json", ".csv")  # SciBERT's copy is .txt, AllenAI's .jsonl


@dataclass
class Citation:
    text: str  # the citation context, as in the file (cite_start/cite_end index into it)
    label: str  # background / method / result
    split: str
    line: int  # the line the record starts on
    citing_paper_id: str | None = None  # Semantic Scholar ids, original format only
    cited_paper_id: str | None = None
    section: str | None = None  # as the citing paper spells it: "DISCUSSION", "1. Introduction"
    cite_start: int | None = None  # the citation marker's character span in text
    cite_end: int | None = None
    label_confidence: float | None = None  # annotator agreement, where the file has it
    citation_id: str | None = None  # unique_id "<citing>><cited>_<excerpt index>"
    is_key_citation: bool | None = None


def _number(value: Any, where: str, name: str) -> float | None:
    """A JSON or CSV number; None for a missing one (the original files write NaN, the CSV an empty cell)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LabelledDataError(f"{where}: {name} {value!r} is not a number") from None
    return None if math.isnan(number) else number


def _scicite_json(row: dict, split: str, where: str, number: int) -> Citation:
    if "string" in row:  # AllenAI's original format
        text = check_text(row.get("string"), where, "string")
        start, end = _number(row.get("citeStart"), where, "citeStart"), _number(row.get("citeEnd"), where, "citeEnd")
        if start is not None and (end is None or not 0 <= start <= end <= len(text)):
            raise LabelledDataError(f"{where}: citation span {start}-{end} outside the {len(text)}-character string")
        section = row.get("sectionName")
        return Citation(
            text=text,
            label=check_label(row.get("label"), SCICITE_LABELS, where),
            split=split,
            line=number,
            citing_paper_id=row.get("citingPaperId") or None,
            cited_paper_id=row.get("citedPaperId") or None,
            section=(section.strip() or None) if isinstance(section, str) else None,
            cite_start=None if start is None else int(start),
            cite_end=None if end is None else int(end),
            label_confidence=_number(row.get("label_confidence"), where, "label_confidence"),
            citation_id=row.get("unique_id") or None,
            is_key_citation=row.get("isKeyCitation"),
        )
    if "text" in row:  # SciBERT's copy: text, label, empty metadata
        text = check_text(row.get("text"), where)
        return Citation(text, check_label(row.get("label"), SCICITE_LABELS, where), split, number)
    raise LabelledDataError(f"{where}: missing column: neither 'text' (SciBERT format) nor 'string' (original)")


def _scicite_csv(file: Path) -> list[Citation]:
    split, records = split_name(file), []
    with open(file, encoding="utf-8", newline="") as f:  # newline="": strings span lines inside quotes
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise LabelledDataError(f"{file}:1: empty file (expected the header string,label,...)") from None
        missing = [c for c in ("string", "label") if c not in header]
        if missing:
            raise LabelledDataError(f"{file}:1: missing column {', '.join(missing)} in header {header}")
        column = {name: i for i, name in enumerate(header)}
        start_line = reader.line_num + 1
        try:
            for row in reader:
                where = f"{file}:{start_line}"
                if len(row) != len(header):
                    raise LabelledDataError(f"{where}: malformed line: {len(row)} fields, header has {len(header)}")
                confidence = row[column["label_confidence"]] if "label_confidence" in column else None
                confidence = _number(confidence, where, "label_confidence")
                text = check_text(row[column["string"]], where, "string")
                label = check_label(row[column["label"]], SCICITE_LABELS, where)
                records.append(Citation(text, label, split, start_line, label_confidence=confidence))
                start_line = reader.line_num + 1
        except csv.Error as err:
            raise LabelledDataError(f"{file}:{reader.line_num}: malformed line: {err}") from None
    return records


def read_scicite(path: Path) -> list[Citation]:
    """SciCite records of a file or folder, each file in whichever of the three formats it is in."""
    records: list[Citation] = []
    for file in data_files(path, SCICITE_SUFFIXES, "SciCite"):
        if file.suffix == ".csv":
            records += _scicite_csv(file)
            continue
        split = split_name(file)
        for number, row in json_lines(file):
            records.append(_scicite_json(row, split, f"{file}:{number}", number))
    return records


# ---- Athar's citation sentiment corpus -------------------------------------------------------------

ATHAR_CODES = {"o": "objective", "p": "positive", "n": "negative"}  # the file's codes -> label names
SENTIMENT_LABELS = tuple(ATHAR_CODES.values())


@dataclass
class SentimentCitation:
    text: str  # the citation sentence, unquoted
    label: str  # objective / positive / negative
    citing_paper_id: str  # ACL Anthology id ("A00-1043"): cross-validation folds group by it
    cited_paper_id: str
    split: str
    line: int


def read_citation_sentiment(path: Path) -> list[SentimentCitation]:
    """Every row of Athar's corpus (a file or folder): citing id, cited id, o/p/n, text; conflicts kept."""
    records = []
    for file in data_files(path, (".txt", ".tsv"), "citation sentiment"):
        split = split_name(file)
        # the texts are CSV-quoted ("He proposed ""ambiguating"" senses"); newline="" accepts CRLF and LF
        with open(file, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", strict=True)
            try:
                for row in reader:
                    where = f"{file}:{reader.line_num}"
                    if not row:
                        continue  # a blank line (a trailing CRLF)
                    if len(row) != 4:
                        raise LabelledDataError(
                            f"{where}: malformed line: {len(row)} tab-separated fields, expected 4 "
                            "(citing id, cited id, o/p/n, text; the file has no header)"
                        )
                    citing, cited, code, text = row
                    if not citing.strip() or not cited.strip():
                        raise LabelledDataError(f"{where}: missing column: empty citing or cited paper id")
                    code = check_label(code, tuple(ATHAR_CODES), where)
                    text = check_text(text, where)
                    records.append(SentimentCitation(text, ATHAR_CODES[code], citing, cited, split, reader.line_num))
            except csv.Error as err:
                raise LabelledDataError(f"{file}:{reader.line_num}: malformed line: {err}") from None
    return records


# ---- conflicting duplicates ------------------------------------------------------------------------


@dataclass
class Conflict:
    text: str  # whitespace-normalised, the key the records share
    labels: dict[str, int]  # label -> number of records
    kept: str | None  # the majority label, or None for a tie (every record of the text dropped)
    lines: list[tuple[str, int]] = field(default_factory=list)  # (split, line) of each record


def text_key(text: str) -> str:
    """Texts that differ only in spacing are the same text (Athar's rows differ in double spaces)."""
    return " ".join(text.split())


def resolve_conflicts(records: Sequence[Any]) -> tuple[list[Any], list[Conflict]]:
    """Records with one label per text, and the conflicts found, by the majority rule:

    among records whose whitespace-normalised texts are equal but whose labels differ, the records of
    the label strictly more frequent than every other stay and the rest are dropped; on a tie all of
    them are dropped (no label can be trusted). Duplicates that agree all stay: in Athar's corpus they
    are one sentence citing several papers, each a citation of its own. Order is kept.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[text_key(record.text)].append(i)
    drop: set[int] = set()
    conflicts = []
    for key, members in groups.items():
        counts = Counter(records[i].label for i in members)
        if len(counts) < 2:
            continue
        (top, n_top), (_, n_second) = counts.most_common(2)
        kept = top if n_top > n_second else None
        drop.update(i for i in members if records[i].label != kept)
        lines = [(records[i].split, records[i].line) for i in members]
        conflicts.append(Conflict(key, dict(sorted(counts.items())), kept, lines))
    return [r for i, r in enumerate(records) if i not in drop], conflicts


# ---- demo generators -------------------------------------------------------------------------------
# Small synthetic files in exactly the real formats (seeded), whose readers give back the returned
# records: the offline demo profile runs every reader on them. Each label has its own phrasing so
# that a demo model has something to learn.

_TOPICS = ["kinase signalling", "graph embeddings", "protein folding", "topic models", "sepsis outcomes", "hedge cues"]
_AUTHORS = ["Smith", "Nakamura", "Okafor", "Jensen", "Moreau", "Silva"]
_CITATION_TEMPLATES = {
    "background": "Previous studies have shown that {t} is common in clinical cohorts ({a} et al., {y}).",
    "method": 'We followed the protocol of {a} et al. ({y}) to measure {t}, with the "default" settings.',
    "result": "Our estimate of {t} agrees with the value reported by {a} et al. ({y}).",
}


def _citation_text(rng: random.Random, label: str) -> str:
    template = _CITATION_TEMPLATES[label]
    return template.format(t=rng.choice(_TOPICS), a=rng.choice(_AUTHORS), y=rng.randint(1990, 2020))


def write_demo_scicite(
    path: Path,
    n: int = 30,  # ten citations per label: enough for a demo model to separate them, read in milliseconds
    seed: int = 0,  # the same file every run, so demo results compare across runs
    fmt: str = "scibert",  # the copy the SciBERT numbers were measured on
) -> list[Citation]:
    """SciCite in `fmt`: "scibert" (JSON lines text/label), "original" (AllenAI's fields) or "csv"."""
    rng, path, records, out = random.Random(seed), Path(path), [], []
    split = split_name(path)
    if fmt == "csv":
        out.append("string,label,label_confidence")
    line = len(out) + 1
    for i in range(n):
        label = SCICITE_LABELS[i % 3] if i < 3 else rng.choice(SCICITE_LABELS)
        text = _citation_text(rng, label)
        if fmt == "scibert":
            out.append(json.dumps({"text": text, "label": label, "metadata": {}}))
            records.append(Citation(text, label, split, line))
        elif fmt == "original":
            citing, cited = f"{rng.getrandbits(160):040x}", f"{rng.getrandbits(160):040x}"
            marker = text.index("(") if "(" in text else 0
            confidence = round(rng.uniform(0.5, 1.0), 4) if rng.random() < 0.7 else None
            row = {
                "source": "explicit",
                "citeEnd": float(len(text) - 1) if i % 2 else len(text) - 1,  # the real files mix 68.0 and 241
                "sectionName": rng.choice(["Introduction", "METHODS", "4. Discussion", ""]),
                "citeStart": float(marker) if i % 2 else marker,
                "string": text,
                "label": label,
                **({"label_confidence": confidence} if confidence is not None else {}),
                "citingPaperId": citing,
                "citedPaperId": cited,
                "isKeyCitation": rng.random() < 0.4,
                "id": f"{citing}>{cited}",
                "unique_id": f"{citing}>{cited}_{i % 3}",
                "excerpt_index": i % 3,
            }
            out.append(json.dumps(row))
            records.append(
                Citation(
                    text=text,
                    label=label,
                    split=split,
                    line=line,
                    citing_paper_id=citing,
                    cited_paper_id=cited,
                    section=row["sectionName"] or None,
                    cite_start=marker,
                    cite_end=len(text) - 1,
                    label_confidence=confidence,
                    citation_id=row["unique_id"],
                    is_key_citation=row["isKeyCitation"],
                )
            )
        elif fmt == "csv":
            if i % 5 == 4:  # the real CSV keeps line breaks of PDF extraction inside quoted strings
                text = text.replace(" agrees", "\nagrees").replace(" shown", "\nshown")
            confidence = round(rng.uniform(0.5, 1.0), 4) if rng.random() < 0.7 else None
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow([text, label, "" if confidence is None else confidence])
            out.append(buffer.getvalue().removesuffix("\n"))
            records.append(Citation(text, label, split, line, label_confidence=confidence))
        else:
            raise ValueError(f"SciCite demo format {fmt!r}: expected scibert, original or csv")
        line += out[-1].count("\n") + 1
    atomic_write(path, "\n".join(out) + "\n")
    return records


_SENTIMENT_TEMPLATES = {
    "positive": '{a} ( {y} ) proposed an elegant and "robust" method for {t} that works well in practice .',
    "negative": "Unlike {a} ( {y} ) , whose approach to {t} fails on noisy data , we generalise .",
    "objective": "{a} ( {y} ) describe a corpus for {t} .",
}


def write_demo_citation_sentiment(
    path: Path,
    n: int = 40,  # a few citations per label besides the three conflict rows; 10-fold CV still has every label
    seed: int = 0,  # the same file every run
) -> list[SentimentCitation]:
    """Athar's format (CRLF, no header, quoted texts), with one majority conflict and one tie."""
    rng, path = random.Random(seed), Path(path)
    split, rows = split_name(path), []
    for i in range(n):
        label = SENTIMENT_LABELS[i % 3] if i < 3 else rng.choice(SENTIMENT_LABELS)
        template = _SENTIMENT_TEMPLATES[label]
        text = template.format(a=rng.choice(_AUTHORS), y=rng.randint(1990, 2010), t=rng.choice(_TOPICS) + f" {i}")
        rows.append(
            [
                f"P{rng.randint(0, 9):02d}-{1000 + i // 3}",
                f"A{rng.randint(90, 99)}-{rng.randint(1000, 9999)}",
                label,
                text,
            ]
        )
    # the real corpus' conflicts: one sentence citing several papers, labelled differently per cited paper
    majority, tie = rows[0][3], rows[1][3]
    rows += [[rows[0][0], "X99-0001", "objective", majority], [rows[0][0], "X99-0002", "positive", majority]]
    rows += [[rows[1][0], "X99-0003", "negative", tie]]
    lines, records = [], []
    for number, (citing, cited, label, text) in enumerate(rows, start=1):
        code = next(c for c, name in ATHAR_CODES.items() if name == label)
        quoted = number % 7 != 0  # most texts are quoted in the real file, some are not
        cell = '"' + text.replace('"', '""') + '"' if quoted or '"' in text else text
        lines.append("\t".join([citing, cited, code, cell]))
        records.append(SentimentCitation(text, label, citing, cited, split, number))
    atomic_write(path, "".join(line + "\r\n" for line in lines))
    return records
