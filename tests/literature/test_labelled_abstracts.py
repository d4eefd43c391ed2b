"""CSAbstruct and the PubMed-RCT / NICTA-PIBOSO text format read from the real files, bad input refused
by file and line, and the demo files read back."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from pipelines.literature.sources import abstract_sentences as sentences
from pipelines.literature.sources.labelled import LabelledDataError

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "literature"
CSABSTRUCT = DATA / "csabstruct"
NICTA = DATA / "nicta_piboso"

if not DATA.is_dir():
    pytest.fail(f"real data samples not found at {DATA}", pytrace=False)


def labels(records) -> dict:
    return dict(collections.Counter(r.label for r in records))


def test_csabstruct_read():
    train = sentences.read_csabstruct(CSABSTRUCT / "train.jsonl")
    dev = sentences.read_csabstruct(CSABSTRUCT / "dev.jsonl")
    assert (len(sentences.by_abstract(train)), len(train)) == (1668, 11333)
    assert (len(sentences.by_abstract(dev)), len(dev)) == (295, 2026)
    assert labels(train) == {"method": 3621, "background": 3615, "result": 2422, "objective": 1325, "other": 350}
    assert labels(dev) == {"background": 681, "method": 624, "result": 410, "objective": 244, "other": 67}
    # every abstract_id in the files is 0: the abstract is named by split and line
    first = sentences.by_abstract(dev)[0]
    assert [s.abstract_id for s in first] == ["dev-1"] * 5
    assert [s.label for s in first] == ["objective", "background", "background", "method", "result"]
    assert [s.confidence for s in first] == [0.4167, 0.4167, 0.4167, 0.6389, 0.6111]
    assert (
        first[0].text
        == "In this paper we consider deterministic policy gradient algorithms for reinforcement learning with continuous actions."
    )
    assert [s.sentence_index for s in first] == [0, 1, 2, 3, 4]
    both = sentences.read_csabstruct(CSABSTRUCT)
    assert collections.Counter(s.split for s in both) == {"train": 11333, "dev": 2026}


def test_nicta_rct_format_read():
    train = sentences.read_nicta(NICTA / "train_clean.txt")
    dev = sentences.read_nicta(NICTA / "dev_clean.txt")
    assert (len(sentences.by_abstract(train)), len(train)) == (720, 6979)
    assert (len(sentences.by_abstract(dev)), len(dev)) == (80, 801)
    assert labels(train) == {
        "outcome": 3186,
        "background": 1832,
        "other": 1114,
        "population": 504,
        "intervention": 258,
        "study design": 85,
    }
    assert labels(dev) == {
        "outcome": 378,
        "background": 191,
        "other": 136,
        "population": 57,
        "intervention": 33,
        "study design": 6,
    }
    first = sentences.by_abstract(dev)[0]
    assert {s.abstract_id for s in first} == {"707740"} and len(first) == 9
    assert [s.label for s in first] == ["population"] + ["outcome"] * 8
    assert (first[0].line, first[-1].line, first[0].split) == (2, 10, "dev_clean")
    assert first[3].text.startswith(
        "On ultrasonography , the pancreas was correctly reported"
    )  # tokenised, as in the file
    assert train[0].abstract_id == "3517006" and train[-1].line == 8418
    # the label set is the caller's: NICTA's lowercase labels are not PubMed RCT's
    with pytest.raises(LabelledDataError, match=r"dev_clean\.txt:2: unknown label 'population'"):
        sentences.read_rct_format(NICTA / "dev_clean.txt", sentences.PUBMED_RCT_LABELS)


def test_rct_format_accepts_crlf_and_a_missing_final_blank_line(tmp_path):
    text = (NICTA / "dev_clean.txt").read_text()
    (tmp_path / "dev.txt").write_bytes(text.rstrip("\n").replace("\n", "\r\n").encode())
    assert [(s.abstract_id, s.text, s.label) for s in sentences.read_nicta(tmp_path / "dev.txt")] == [
        (s.abstract_id, s.text, s.label) for s in sentences.read_nicta(NICTA / "dev_clean.txt")
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("outcome\tA sentence .\n", r"x\.txt:1: malformed line: a sentence outside an abstract"),
        ("###1\nresult\tA sentence .\n", r"x\.txt:2: unknown label 'result'"),
        ("###1\noutcome A sentence without a tab .\n", r"x\.txt:2: malformed line: expected '<label><TAB><sentence>'"),
        ("###1\noutcome\t   \n", r"x\.txt:2: empty text"),
        ("###1\noutcome\tA .\n\n###1\noutcome\tB .\n", r"x\.txt:4: abstract 1 appears twice"),
        ("###1\n\n###2\noutcome\tB .\n", r"x\.txt:1: empty text: abstract 1 has no sentences"),
        ("###\noutcome\tB .\n", r"x\.txt:1: malformed line: '###' without an abstract id"),
    ],
)
def test_rct_format_bad_input_refused(tmp_path, content, message):
    (tmp_path / "x.txt").write_text(content)
    with pytest.raises(LabelledDataError, match=message):
        sentences.read_nicta(tmp_path / "x.txt")


@pytest.mark.parametrize(
    "line, message",
    [
        (
            '{"abstract_id": 0, "sentences": ["A.", "B."], "labels": ["method"], "confs": [1, 1]}',
            r"y\.jsonl:2: malformed line: 2 sentences, 1 labels, 2 confs",
        ),
        (
            '{"abstract_id": 0, "sentences": ["A."], "labels": ["intro"], "confs": [1]}',
            r"y\.jsonl:2: sentence 0: unknown label 'intro'",
        ),
        ('{"abstract_id": 0, "sentences": [""], "labels": ["method"]}', r"y\.jsonl:2: sentence 0: empty text"),
        ('{"abstract_id": 0, "labels": ["method"]}', r"y\.jsonl:2: missing column: 'sentences' and 'labels'"),
        ('{"abstract_id": 0, "sentences": [], "labels": []}', r"y\.jsonl:2: empty text: an abstract without sentences"),
        (
            '{"abstract_id": 0, "sentences": ["A."], "labels": ["method"], "confs": ["high"]}',
            r"y\.jsonl:2: malformed line: 'confs' must be numbers",
        ),
        ('{"abstract_id": 0, "sentences": ["A."], "labels": ["method"]', r"y\.jsonl:2: malformed line: not JSON"),
    ],
)
def test_csabstruct_bad_input_refused(tmp_path, line, message):
    good = (CSABSTRUCT / "dev.jsonl").read_text().splitlines()[0]
    (tmp_path / "y.jsonl").write_text(f"{good}\n{line}\n")
    with pytest.raises(LabelledDataError, match=message):
        sentences.read_csabstruct(tmp_path / "y.jsonl")


def test_demo_csabstruct_round_trip(tmp_path):
    written = sentences.write_demo_csabstruct(tmp_path / "train.jsonl", n_abstracts=12, seed=4)
    assert sentences.read_csabstruct(tmp_path / "train.jsonl") == written
    assert len(sentences.by_abstract(written)) == 12 and set(labels(written)) <= set(sentences.CSABSTRUCT_LABELS)
    assert '"abstract_id": 0' in (tmp_path / "train.jsonl").read_text()  # as the real files write it


@pytest.mark.parametrize("label_set", [sentences.NICTA_LABELS, sentences.PUBMED_RCT_LABELS])
def test_demo_rct_format_round_trip(tmp_path, label_set):
    written = sentences.write_demo_rct_format(tmp_path / "test.txt", n_abstracts=8, seed=5, labels=label_set)
    assert sentences.read_rct_format(tmp_path / "test.txt", label_set) == written
    assert len(sentences.by_abstract(written)) == 8 and written[0].label == label_set[0]
    assert (tmp_path / "test.txt").read_text().endswith(".\n\n")  # a blank line after the last abstract too
