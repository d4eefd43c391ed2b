"""The ablation switches of the contact model (issue 12): edge types and message-passing depth.

`model.edges` picks the graphs ContactNet passes messages over (sequence neighbours, predicted spatial
neighbours, both: contacts.py), `model.layers` the rounds, `model.window` the sequence graph (rebuilt at
load from the same prepared data). Each variant is built the way the train stage builds it (the project's
datamodule and build_module hooks, a params file with the override), trains a step and is served.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from components.config import Invalid, load_config
from components.project import Paths
from pipelines.protein.config import ModelSection
from pipelines.protein.project import PROTEIN

TINY = {"hidden": 16, "layers": 1, "heads": 2, "channels": 8, "blocks": 1, "dropout": 0.0, "window": 4, "crop": 48}


def config(tmp_path, overrides=()):
    params = {
        "profile": "demo",
        "seed": 1,
        "tracking": {"uri": "sqlite:///mlflow.db"},
        "protein": {"data": {"source": "demo"}, "model": TINY, "train": {"lr": 1e-3}, "tune": {}, "register": {}},
        "profiles": {"demo": {}, "full": {}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return load_config("protein", PROTEIN.section, path, "demo", list(overrides))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(tmp folder, paths) of 18 demo chains stored as prepare stores them (graphs with window 4).

    The split is by hand (every third chain held out): prepare's MMseqs2 clustering costs ~25 s here and is
    tested elsewhere; these tests need the stored layout only.
    """
    from pipelines.protein.config import DataSection
    from pipelines.protein.data import kept_chains, raw_files
    from pipelines.protein.dataset import build, chain_name
    from pipelines.protein.demo import write_demo

    tmp = tmp_path_factory.mktemp("protein")
    paths = Paths.of("protein", tmp / "data")
    paths.raw.mkdir(parents=True)
    paths.prepared.mkdir(parents=True)
    write_demo(paths.raw, 18, seed=1)
    chains, _ = kept_chains(raw_files(paths.raw)[0], DataSection(source="demo"))
    split_of = {chain_name(c): ("train", "val", "train", "test")[i % 4] for i, c in enumerate(chains)}
    build(chains, split_of, paths.prepared, TINY["window"])
    (paths.prepared / "meta.json").write_text(json.dumps({"window": TINY["window"]}))
    return tmp, paths


def build(prepared, *overrides):
    tmp, paths = prepared
    cfg = config(tmp, [f"protein.model.{o}" for o in overrides])
    data = PROTEIN.datamodule(cfg, paths)
    torch.manual_seed(0)  # the same initial weights for every variant: only the switch differs
    return cfg, data, PROTEIN.build_module(cfg, data, {})


def train_step(module, data) -> float:
    module.train()
    optimiser = module.configure_optimizers()
    loss = module.step(next(iter(data.loader("train", train=True))), "train")
    optimiser.zero_grad()
    loss.backward()
    grads = [p.grad for p in module.net.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), "no gradient reached the message passing"
    optimiser.step()
    return loss.item()


def graphs(net, data) -> list[set[tuple[int, int]]]:
    """The edge sets each pass of `net` passes messages over, recorded at the encoder's input."""
    seen = []
    hook = net.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[1]))
    with torch.no_grad():
        net.eval()(data)
    hook.remove()
    return [set(map(tuple, e.T.tolist())) for e in seen]


@pytest.mark.parametrize(("edges", "n_passes"), [("[sequence]", 1), ("[spatial]", 2), ("[sequence,spatial]", 2)])
def test_each_edge_variant_builds_its_graphs_and_trains_a_step(prepared, edges, n_passes):
    _, data, module = build(prepared, f"edges={edges}")
    _, _, baseline = build(prepared)
    assert module.net.state_dict().keys() == baseline.net.state_dict().keys()  # same parameters, other graphs
    chain = data.items("val")[0]
    sequence = set(map(tuple, chain.edge_index.T.tolist()))
    passes = graphs(module.net, chain)
    assert len(passes) == n_passes
    if edges == "[sequence]":
        assert passes == [sequence]
    if edges == "[spatial]":
        assert passes[0] == set()  # nothing to pass messages over before a distogram exists
        assert 0 < len(passes[1]) <= chain.num_nodes * 16 and passes[1] != sequence
    if edges == "[sequence,spatial]":
        assert passes[0] == sequence and passes[1] > sequence  # the predicted neighbours are added
    assert any(abs(i - j) > 4 for i, j in passes[-1]) == (edges != "[sequence]")  # beyond the window: spatial only
    assert torch.isfinite(torch.tensor(train_step(module, data)))


def test_the_variants_predict_differently_and_serve(prepared, tmp_path):
    from pipelines.protein.monitoring import EMBEDDING_DIMS, embedding
    from pipelines.protein.pyfunc import ProteinContactModel

    _, paths = prepared
    chain = build(prepared)[1].items("test")[0]
    outputs = {}
    for edges in ("[sequence]", "[spatial]"):
        cfg, data, module = build(prepared, f"edges={edges}")
        out = tmp_path / edges.strip("[]")
        out.mkdir()
        PROTEIN.export(cfg, module, paths, out)
        model = ProteinContactModel.from_dir(out)
        assert model.config["architecture"]["edges"] == [edges.strip("[]")]
        outputs[edges] = model.distogram(chain.sequence)
        assert embedding(model, chain.sequence).shape == (EMBEDDING_DIMS,)  # the monitor reads the last pass
    assert not torch.allclose(torch.from_numpy(outputs["[sequence]"]), torch.from_numpy(outputs["[spatial]"]))


def test_layers_sets_the_message_passing_rounds(prepared):
    depths = {n: len(build(prepared, f"layers={n}")[2].net.encoder.convs) for n in (1, 3)}
    assert depths == {1: 1, 3: 3}


def test_window_is_honoured_at_load_without_a_new_prepare(prepared, tmp_path):
    _, paths = prepared
    cfg, data, module = build(prepared, "window=2")
    chain = data.items("val")[0]
    separation = (chain.edge_index[0] - chain.edge_index[1]).abs()
    assert separation.max() == 2 and chain.edge_attr.shape[0] == chain.edge_index.shape[1]
    crop = next(iter(data.loader("train", train=True)))
    assert (crop.edge_index[0] - crop.edge_index[1]).abs().max() == 2
    PROTEIN.export(cfg, module, paths, tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["window"] == 2  # served with the graph it learnt on
    stored = build(prepared)[1].items("val")[0]
    assert (stored.edge_index[0] - stored.edge_index[1]).abs().max() == 4  # the default: the stored graphs


@pytest.mark.parametrize("edges", [[], ["sequence", "sequence"], ["contact"]])
def test_bad_edge_lists_are_refused(edges):
    with pytest.raises(Invalid, match="edges"):
        ModelSection(edges=edges).check()
