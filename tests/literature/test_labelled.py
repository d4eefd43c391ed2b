"""SciCite (three formats) and Athar's citation sentiment corpus read from the real files, conflicts
resolved by the majority rule, bad input refused by file and line, and the demo files read back."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.literature.sources import labelled
from pipelines.literature.sources.labelled import LabelledDataError

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "literature"
SCICITE = DATA / "scicite"
ATHAR = DATA / "citation_sentiment" / "complete_corpus.txt"

if not DATA.is_dir():
    pytest.fail(f"real data samples not found at {DATA}", pytrace=False)


def labels(records) -> dict:
    return dict(collections.Counter(r.label for r in records))


# ---- SciCite ----------------------------------------------------------------------------------------


def test_scicite_scibert_json_lines():
    train, dev = labelled.read_scicite(SCICITE / "train.txt"), labelled.read_scicite(SCICITE / "dev.txt")
    assert len(train) == 7320 and labels(train) == {"background": 4297, "method": 2038, "result": 985}
    assert len(dev) == 916 and labels(dev) == {"background": 538, "method": 255, "result": 123}
    assert train[0].text.startswith("However, how frataxin interacts with the Fe-S cluster biosynthesis")
    assert (train[0].label, train[0].split, train[0].line, train[0].citing_paper_id) == ("background", "train", 1, None)
    assert "\nrobinson et al.: genomic regions" in train[1].text  # PDF line breaks kept, as in the file
    both = labelled.read_scicite(SCICITE)  # the folder: train.txt and dev.txt (original/ is a subfolder)
    assert collections.Counter(r.split for r in both) == {"train": 7320, "dev": 916}


def test_scicite_original_json_lines():
    dev = labelled.read_scicite(SCICITE / "original" / "dev.jsonl")
    assert len(dev) == 916 and labels(dev) == {"background": 538, "method": 255, "result": 123}
    first = dev[0]
    assert (first.label, first.section, first.cite_start, first.cite_end) == ("result", "Discussion", 64, 68)
    assert first.text[first.cite_start : first.cite_end] == "(16)"
    assert first.citing_paper_id == "8f1fbe460a901d994e9b81d69f77bfbe32719f4c"
    assert first.citation_id == "8f1fbe460a901d994e9b81d69f77bfbe32719f4c>5e413c7872f5df231bf4a4f694504384560e98ca_0"
    assert (first.is_key_citation, first.label_confidence) == (False, None)
    assert (
        dev[1].text[dev[1].cite_start : dev[1].cite_end] == "Viblanc et al. 2010" and dev[1].label_confidence == 0.7337
    )
    # line 504 writes NaN for its span (and source): no span, not a crash
    nan_row = next(r for r in dev if r.cite_start is None)
    assert (nan_row.line, nan_row.section, nan_row.label) == (504, "DISCUSSION", "result")
    assert sum(r.label_confidence is not None for r in dev) == 691
    assert sum(bool(r.is_key_citation) for r in dev) == 364
    assert len({r.citing_paper_id for r in dev}) == 817
    sections = collections.Counter(r.section for r in dev)
    assert (sections["Discussion"], sections["Introduction"], sections[None]) == (117, 91, 71)
    # SOURCE.md: the SciBERT dev copy is line for line the original dev (string and label)
    scibert = labelled.read_scicite(SCICITE / "dev.txt")
    assert [(r.text, r.label) for r in scibert] == [(r.text, r.label) for r in dev]


def test_scicite_original_train_csv():
    train = labelled.read_scicite(SCICITE / "original" / "trainOriginal.csv")
    assert len(train) == 8243 and labels(train) == {"background": 4840, "method": 2294, "result": 1109}
    assert sum(r.label_confidence is None for r in train) == 2106  # empty cells
    assert sum("\n" in r.text for r in train) == 610  # strings spanning lines inside quotes
    assert (train[1].line, train[2].line) == (3, 6)  # the record's first line, after a three-line string
    assert train[-1].line == 9303 and train[-1].text.startswith("Most studies focused on the relation between brain")
    # SOURCE.md: SciBERT's 7,320 training rows are a subset of these 8,243
    texts = {r.text for r in train}
    assert all(r.text in texts for r in labelled.read_scicite(SCICITE / "train.txt"))


def test_scicite_one_conflicting_duplicate_in_train():
    kept, conflicts = labelled.resolve_conflicts(labelled.read_scicite(SCICITE / "train.txt"))
    assert len(conflicts) == 1 and len(kept) == 7318
    (conflict,) = conflicts
    assert (conflict.labels, conflict.kept, conflict.lines) == (
        {"background": 1, "method": 1},
        None,
        [("train", 2640), ("train", 6398)],
    )


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.txt", '{"text": "ok", "label": "background", "metadata": {}}\n{"text": "x", "label": "motivation"}\n', r"a\.txt:2: unknown label 'motivation'"),
        ("b.txt", '{"label": "method"}\n', r"b\.txt:1: missing column: neither 'text'"),
        ("c.jsonl", '{"string": "   ", "label": "result"}\n', r"c\.jsonl:1: empty string"),
        ("d.txt", '{"text": "fine", "label": "result"}\n{"text": "cut\n', r"d\.txt:2: malformed line: not JSON"),
        ("e.jsonl", '{"string": "short", "label": "result", "citeStart": 2, "citeEnd": 40}\n', r"e\.jsonl:1: citation span 2.0-40.0 outside"),
        ("f.csv", "string,confidence\nabc,1.0\n", r"f\.csv:1: missing column label"),
        ("k.jsonl", '{"string": "short", "label": "result", "citeStart": "two", "citeEnd": 4}\n', r"k\.jsonl:1: citeStart 'two' is not a number"),
        ("g.csv", 'string,label,label_confidence\n"two\nlines",method,1.0\nx,unknown,\n', r"g\.csv:4: unknown label 'unknown'"),
        ("h.csv", 'string,label,label_confidence\n"ok",method,high\n', r"h\.csv:2: label_confidence 'high' is not a number"),
        ("i.csv", 'string,label,label_confidence\n"a"b,method,1\n', r"i\.csv:2: malformed line"),
        ("j.csv", "string,label,label_confidence\nabc,method\n", r"j\.csv:2: malformed line: 2 fields"),
    ],
)  # fmt: skip
def test_scicite_bad_input_refused(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(LabelledDataError, match=message):
        labelled.read_scicite(tmp_path / name)


def test_reader_refuses_missing_paths(tmp_path):
    with pytest.raises(LabelledDataError, match="no such file or folder"):
        labelled.read_scicite(tmp_path / "absent.jsonl")
    (tmp_path / "SOURCE.md").write_text("not data")
    with pytest.raises(LabelledDataError, match="no SciCite files"):
        labelled.read_scicite(tmp_path)


@pytest.mark.parametrize("fmt", ["scibert", "original", "csv"])
def test_demo_scicite_round_trip(tmp_path, fmt):
    path = tmp_path / ("train.csv" if fmt == "csv" else "train.jsonl")
    written = labelled.write_demo_scicite(path, n=40, seed=1, fmt=fmt)
    assert labelled.read_scicite(path) == written
    assert set(labels(written)) == set(labelled.SCICITE_LABELS) and written[0].split == "train"
    if fmt == "original":
        real_lines = (SCICITE / "original" / "dev.jsonl").read_text().splitlines()
        real_keys = set().union(*(json.loads(line) for line in real_lines))
        assert all(set(json.loads(line)) <= real_keys for line in path.read_text().splitlines())
    if fmt == "csv":
        assert any("\n" in r.text for r in written)  # the multi-line quoted strings of the real CSV


# ---- Athar's citation sentiment corpus -------------------------------------------------------------


def test_athar_corpus_read():
    raw = ATHAR.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") == 8736  # CRLF throughout, no header
    records = labelled.read_citation_sentiment(ATHAR)
    assert len(records) == 8736 and labels(records) == {"objective": 7627, "positive": 829, "negative": 280}
    assert len({r.citing_paper_id for r in records}) == 2992 and len({r.cited_paper_id for r in records}) == 194
    first = records[0]
    assert (first.citing_paper_id, first.cited_paper_id, first.label, first.line) == (
        "A00-1043",
        "A00-2024",
        "objective",
        1,
    )
    assert first.text.startswith("We analyzed a set of articles") and not first.text.startswith('"')
    quoted = records[69]  # line 70: ""correct"" inside a quoted text
    assert quoted.text.startswith('These methods have reported performance in the range of 95-99% "correct" by word')
    assert records[-1].line == 8736 and records[-1].text.endswith("the memory-based tagger by Daelemans et al.")
    assert labelled.read_citation_sentiment(ATHAR.parent) == records  # the folder


def test_athar_conflicting_duplicates_resolved_by_majority():
    records = labelled.read_citation_sentiment(ATHAR)
    kept, conflicts = labelled.resolve_conflicts(records)
    assert len(conflicts) == 79
    assert sum(c.kept is None for c in conflicts) == 69  # ties: every record of the text dropped
    assert sum(c.kept is not None for c in conflicts) == 10
    assert len(records) - len(kept) == 150 and labels(kept) == {"objective": 7558, "positive": 772, "negative": 256}
    tie_kinds = collections.Counter(tuple(c.labels) for c in conflicts if c.kept is None)
    assert tie_kinds == {("objective", "positive"): 48, ("negative", "objective"): 16, ("negative", "positive"): 5}
    majority = next(c for c in conflicts if c.lines[0] == ("complete_corpus", 31))
    assert (majority.labels, majority.kept) == ({"objective": 1, "positive": 2}, "positive")
    assert majority.lines == [("complete_corpus", 31), ("complete_corpus", 2218), ("complete_corpus", 8488)]
    assert majority.text.startswith("Recent comparisons of approaches that can be trained on corpora")
    # no conflicts remain, and agreeing duplicates (one sentence citing several papers) stay
    assert labelled.resolve_conflicts(kept)[1] == []
    assert len({labelled.text_key(r.text) for r in kept}) < len(kept)


def test_resolve_conflicts_rule():
    def rec(text, label, line):
        return SimpleNamespace(text=text, label=label, split="s", line=line)

    records = [
        rec("A  cites B.", "positive", 1),
        rec("A cites B.", "objective", 2),  # the same text, spaced differently
        rec("A cites B.", "positive", 3),
        rec("tie", "negative", 4),
        rec("tie", "positive", 5),
        rec("agree", "objective", 6),
        rec("agree", "objective", 7),
    ]
    kept, conflicts = labelled.resolve_conflicts(records)
    assert [r.line for r in kept] == [1, 3, 6, 7]
    assert [(c.text, c.labels, c.kept) for c in conflicts] == [
        ("A cites B.", {"objective": 1, "positive": 2}, "positive"),
        ("tie", {"negative": 1, "positive": 1}, None),
    ]


@pytest.mark.parametrize(
    "row, message",
    [
        ("A00-1\tB00-2\to", r"bad\.txt:2: malformed line: 3 tab-separated fields, expected 4"),
        ("A00-1\tB00-2\tx\ttext", r"bad\.txt:2: unknown label 'x' \(expected one of o, p, n\)"),
        ("A00-1\tB00-2\tp\t  ", r"bad\.txt:2: empty text"),
        ("\tB00-2\tp\ttext", r"bad\.txt:2: missing column: empty citing or cited paper id"),
        ('A00-1\tB00-2\tp\t"open "quote', r"bad\.txt:2: malformed line"),
    ],
)
def test_athar_bad_input_refused(tmp_path, row, message):
    good = ATHAR.read_bytes().split(b"\r\n")[0].decode()
    (tmp_path / "bad.txt").write_bytes(f"{good}\r\n{row}\r\n".encode())
    with pytest.raises(LabelledDataError, match=message):
        labelled.read_citation_sentiment(tmp_path / "bad.txt")


def test_demo_citation_sentiment_round_trip(tmp_path):
    path = tmp_path / "complete_corpus.txt"
    written = labelled.write_demo_citation_sentiment(path, n=40, seed=2)
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") == len(written) == 43 and b'""' in raw
    assert labelled.read_citation_sentiment(path) == written
    kept, conflicts = labelled.resolve_conflicts(written)
    assert [c.kept for c in conflicts] == ["objective", None] and len(kept) == 43 - 1 - 2
