"""Rhetorical roles (Cohan et al. 2019): [SEP] encoding, the demo chain served by abstract, the real corpora."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.literature.test_project import (
    SHARED,
    assert_groups_disjoint,
    demo_chain,
    real_prepare,
)

pytestmark = pytest.mark.usefixtures("store")  # every test writes MLflow runs into a temporary store


def tokenizer():
    from pipelines.literature.data import train_wordpiece

    return train_wordpiece(["alpha beta gamma delta epsilon zeta eta theta"] * 3, 100, 1)


def test_an_abstract_is_one_sequence_with_a_read_out_at_each_sep():
    from pipelines.literature.data import encode_abstracts

    tok = tokenizer()
    texts = ["alpha beta", "gamma delta epsilon zeta eta theta alpha beta gamma", "delta", "zeta eta"]
    ids, mask, row = encode_abstracts(tok, texts, ["a", "a", "b", "b"], max_len=12, pad_id=0)
    sep, cls = tok.token_to_id("[SEP]"), tok.token_to_id("[CLS]")
    assert ids.shape == (2, 12) and (ids[:, 0] == cls).all()
    assert (ids[row >= 0] == sep).all() and sorted(row[row >= 0].tolist()) == [0, 1, 2, 3]
    # the first abstract: 2 + 9 word tokens do not fit 12 - 1 - 2 = 9; the long sentence is cut, the short kept
    assert mask[0].sum() == 12 and ids[0, 1:3].tolist() == [tok.token_to_id("alpha"), tok.token_to_id("beta")]
    many = [f"alpha {i}" for i in range(9)]  # 9 sentences cannot fit 12 tokens at >= 2 each: two sequences
    ids, _, row = encode_abstracts(tok, many, ["x"] * 9, max_len=12, pad_id=0)
    assert ids.shape[0] == 2 and sorted(row[row >= 0].tolist()) == list(range(9))


def test_the_demo_trains_beats_the_majority_and_serves_abstracts(tmp_path):
    from pipelines.literature.project import LITERATURE
    from pipelines.literature.pyfunc import LiteratureModel, TextInputError

    cfg, paths, metrics = demo_chain(tmp_path, "roles", ["literature.model.max_len=96"])
    test, baseline = metrics["test"]["macro_f1"], metrics["baseline"]["test"]["macro_f1"]
    assert test > baseline + 0.3, f"macro-F1 {test:.3f} vs majority {baseline:.3f}"
    assert_groups_disjoint(paths)
    model = LiteratureModel.from_dir(paths.model)
    assert LITERATURE.score(model, cfg, paths) == pytest.approx(test, abs=1e-9)
    request, _ = LITERATURE.requests(paths, "test")
    first = request[request["abstract_id"] == request["abstract_id"].iloc[0]]
    answer = model.predict(None, first[["text"]])  # no abstract_id: all rows are one abstract
    assert len(answer) == len(first) and answer.filter(like="p_").sum(axis=1).round(5).eq(1.0).all()
    assert answer["label"].tolist() == model.predict(None, first)["label"].tolist()
    with pytest.raises(TextInputError, match=r"column 'abstract_id', row 1"):
        model.predict(None, pd.DataFrame({"text": ["A.", "B."], "abstract_id": ["1", None]}))


@pytest.mark.parametrize(
    ("corpus", "key", "train_sentences", "dev_sentences"),
    [("csabstruct", "csabstruct_dir", 11333, 2026), ("nicta", "nicta_dir", 6979, 801)],
)
def test_the_real_corpora_pull_validate_and_prepare(tmp_path, corpus, key, train_sentences, dev_sentences):
    folder = SHARED / ("csabstruct" if corpus == "csabstruct" else "nicta_piboso")
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing: the {corpus} copy must sit in the shared data folder")
    overrides = [f"literature.data.roles_corpus={corpus}", f"literature.data.{key}={folder}"]
    paths, summary = real_prepare(tmp_path, "roles", [*overrides, "literature.model.max_len=256"])
    counts = summary["counts"]
    # CSAbstruct: one pair of identical abstracts with different labels (a tie: both dropped, 14 sentences)
    dropped = {"csabstruct": 14, "nicta": 0}[corpus]
    assert counts["test"] == dev_sentences and counts["train"] + counts["val"] == train_sentences - dropped
    assert 0.1 * (train_sentences - dropped) <= counts["val"] < 0.1 * train_sentences + 40
    assert summary["sequences"]["test"] >= summary["groups_per_split"]["test"]
    assert_groups_disjoint(paths)  # no abstract split across train / val
