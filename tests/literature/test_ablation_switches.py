"""The ablation switches of the literature project (issue 12), each shown to change the input or the network.

- `model.context`: roles sentences read inside their abstract or alone (re-encoded at load, same prepared data);
- `model.freeze_encoder`: only the head learns;
- `model.dapt_epochs`: masked-LM domain adaptation before fine-tuning, as a train-time override.
One demo CSAbstruct preparation (tiny scratch BERT) is shared by the module; each test takes seconds.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from components.project import Paths
from pipelines.literature.project import LITERATURE
from tests.literature.test_project import config

TINY = ["literature.task=roles", "literature.model.max_len=48", "literature.data.demo_rows=120"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(tmp folder, paths) of a prepared demo roles set: pull + prepare only, no MLflow."""
    tmp = tmp_path_factory.mktemp("roles")
    cfg = config(tmp, overrides=TINY)
    paths = Paths.of("literature", tmp / "data")
    paths.raw.mkdir(parents=True)
    paths.prepared.mkdir(parents=True)
    LITERATURE.pull(cfg, paths.raw)
    LITERATURE.prepare(cfg, paths, paths.prepared)
    return tmp, paths


def build(prepared, *overrides):
    tmp, paths = prepared
    cfg = config(tmp, overrides=[*TINY, *overrides])
    data = LITERATURE.datamodule(cfg, paths)
    torch.manual_seed(0)  # the same initial weights for every variant: only the switch differs
    return cfg, data, LITERATURE.build_module(cfg, data, {})


def train_step(module, data) -> float:
    """One optimiser step on the first training batch (what the train stage repeats); the loss before it."""
    module.train()
    optimiser = module.configure_optimizers()
    loss = module.step(next(iter(data.loader("train", train=True))), "train")
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item()


def test_sentence_context_reads_each_sentence_alone_and_still_trains(prepared):
    _, abstract, _ = build(prepared)
    _, alone, module = build(prepared, "literature.model.context=sentence")
    for split in ("train", "val", "test"):
        row_a, y_a = abstract.rows(split)
        row_s, y_s = alone.rows(split)
        assert torch.equal(y_a, y_s)  # the same sentences and labels, in the same order
        assert row_a.shape[0] < len(y_a)  # abstract: several sentences per sequence
        assert row_s.shape[0] == len(y_s) and ((row_s >= 0).sum(1) == 1).all()  # alone: one [SEP] read-out each
        assert sorted(row_s[row_s >= 0].tolist()) == list(range(len(y_s)))
    ids, _, y = alone.tensors("train")
    assert (y != -100).sum() == len(alone.rows("train")[1])  # one target per sentence, at its [SEP]
    assert torch.isfinite(torch.tensor(train_step(module, alone)))
    assert module.hparams["context"] == "sentence"


def test_a_sentence_context_model_serves_each_row_alone(prepared, tmp_path):
    from pipelines.literature.pyfunc import LiteratureModel

    _, paths = prepared
    cfg, data, module = build(prepared, "literature.model.context=sentence")
    train_step(module, data)
    LITERATURE.export(cfg, module, paths, tmp_path)
    model = LiteratureModel.from_dir(tmp_path)
    assert model.config["context"] == "sentence"
    request, _ = LITERATURE.requests(paths, "test")
    first = request[request["abstract_id"] == request["abstract_id"].iloc[0]].reset_index(drop=True)
    together = model.predict(None, first)
    one = model.predict(None, first.iloc[[1]].reset_index(drop=True))
    # alone means alone: a sentence's probabilities do not depend on its neighbours
    pd.testing.assert_frame_equal(together.iloc[[1]].reset_index(drop=True), one, atol=1e-5)


def test_abstract_context_is_still_the_default_and_depends_on_neighbours(prepared, tmp_path):
    from pipelines.literature.pyfunc import LiteratureModel

    _, paths = prepared
    cfg, data, module = build(prepared)
    assert data.context == "abstract" and not module.net.frozen
    train_step(module, data)
    LITERATURE.export(cfg, module, paths, tmp_path)
    model = LiteratureModel.from_dir(tmp_path)
    request, _ = LITERATURE.requests(paths, "test")
    first = request[request["abstract_id"] == request["abstract_id"].iloc[0]].reset_index(drop=True)
    together = model.predict(None, first).filter(like="p_").iloc[1].to_numpy()
    one = model.predict(None, first.iloc[[1]].reset_index(drop=True)).filter(like="p_").iloc[0].to_numpy()
    assert abs(together - one).max() > 1e-6  # in its abstract, the neighbours change the prediction


def test_freeze_encoder_trains_the_head_only(prepared):
    _, data, frozen = build(prepared, "literature.model.freeze_encoder=true")
    _, _, tuned = build(prepared)
    for module in (frozen, tuned):
        before = {k: v.clone() for k, v in module.net.state_dict().items()}
        train_step(module, data)
        after = module.net.state_dict()
        module.changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert frozen.changed == {"head.weight", "head.bias"}
    assert any(k.startswith("encoder.") for k in tuned.changed)
    frozen.train()
    assert not frozen.net.encoder.training and frozen.net.training  # no dropout in the fixed features
    assert not any(p.requires_grad for p in frozen.net.encoder.parameters())


def test_dapt_epochs_is_a_train_time_override(prepared):
    _, _, plain = build(prepared)
    _, _, adapted = build(prepared, "literature.model.dapt_epochs=1")
    assert plain.hparams["dapt_losses"] == [] and len(adapted.hparams["dapt_losses"]) == 1
    word = "encoder.embeddings.word_embeddings.weight"  # same seed, so only the masked-LM epoch moved it
    assert not torch.equal(plain.net.state_dict()[word], adapted.net.state_dict()[word])


def test_position_context_hides_the_neighbours_words_but_keeps_the_abstract_layout(prepared, tmp_path):
    from pipelines.literature.pyfunc import LiteratureModel

    _, paths = prepared
    outputs = {}
    for context in ("abstract", "position"):
        cfg, data, module = build(prepared, f"literature.model.context={context}")
        ids, mask, _ = data.tensors("train")
        row = data.rows("train")[0]
        s = int(((row >= 0).sum(1) >= 2).nonzero()[0])  # a sequence holding at least two sentences
        first_sep, second_sep = (row[s] >= 0).nonzero().flatten()[:2].tolist()
        edited = ids[s : s + 1].clone()
        word = second_sep - 1  # the last word piece of the second sentence, swapped for [MASK] (any id but [SEP])
        edited[0, word] = 4 if edited[0, word] != 4 else 1
        net = module.net.eval()
        with torch.no_grad():
            before, after = net(ids[s : s + 1], mask[s : s + 1]), net(edited, mask[s : s + 1])
        outputs[context] = (before[0, first_sep] - after[0, first_sep]).abs().max().item()
        assert torch.equal(data.tensors("train")[0], build(prepared)[1].tensors("train")[0])  # the same input
        LITERATURE.export(cfg, module, paths, tmp_path)
        served = LiteratureModel.from_dir(tmp_path)
        assert (served.net.sep_id is not None) == (context == "position")  # model.json carries the switch
        assert torch.isfinite(torch.tensor(train_step(module, data)))  # block attention trains (no NaN rows)
    assert outputs["position"] == 0.0 and outputs["abstract"] > 1e-6
