"""The multimodal model's ablation options (model.gate, model.text, model.spatial_attention): off by
default with the network unchanged, really present or absent when set, trainable, carried through the
config and rebuilt by the served model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from components.config import Invalid, load_config
from components.gating import BiologicalAttention, MatchedControl
from pipelines.medical.config import ModelSection
from pipelines.medical.evaluation.evaluate import text_attribution_table
from pipelines.medical.evaluation.explain import text_attributions
from pipelines.medical.models import MultiModalMedicalNet, build_model
from pipelines.medical.project import MEDICAL

K, VOCAB, N = 14, 40, 64  # 64 px: DenseNet121's feature grid is 2x2
SMALL = dict(d_model=32, n_heads=4, n_text_layers=1, max_len=16, dropout=0.0)
# parameters of the default SMALL model, counted on the network before the options existed
BASE_PARAMS = 7_004_944
GATE_PARAMS = 2 * (1024 * 64 + 2 * 64 + 1)  # two AxisScores, F = 1024, r = 1024 // 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # DenseNet's many small ops run far slower with two threads on two shared cores (see test_models.py)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net(**options) -> MultiModalMedicalNet:
    torch.manual_seed(0)
    return build_model("multimodal", K, VOCAB, **SMALL, **options)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 1, N, N, generator=torch.Generator().manual_seed(0))


TOKENS = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 9, 3, 0, 0, 0]])


def _forward_backward(net: torch.nn.Module, images: torch.Tensor, tokens=TOKENS) -> torch.Tensor:
    net.train()
    out = net(images, tokens)
    assert out.shape == (2, K) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    return out


def test_defaults_are_the_network_as_before():
    net = _net()
    assert _n_params(net) == BASE_PARAMS
    assert net.gate is None and net.text and isinstance(net.spatial_attn, torch.nn.Conv2d)
    explicit = _net(gate="none", text=True, spatial_attention=True)
    assert list(net.state_dict()) == list(explicit.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), explicit.state_dict().values()))


@pytest.mark.parametrize("kind,cls", [("biological", BiologicalAttention), ("matched", MatchedControl)])
def test_gate_on_the_feature_map(kind, cls, images):
    net = _net(gate=kind)
    assert isinstance(net.gate, cls) and _n_params(net) == BASE_PARAMS + GATE_PARAMS
    seen = {}
    # a hook that returns None keeps the output (dict.update does; setdefault would replace it)
    net.gate.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    _forward_backward(net, images)
    assert seen["x"].shape == (2, 1, 4, 1024)  # [batch, time = one film, space = 2x2 positions, features]
    for axis in (net.gate.spatial, net.gate.temporal):
        assert axis.fc2.weight.grad.abs().sum() > 0
    assert net.features_relu is not None and net.gradcam_layer == "features_relu"  # Grad-CAM's layer kept


def test_text_off_has_no_text_branch_and_ignores_tokens(images):
    net = _net(text=False)
    assert not hasattr(net, "tok_embed") and not hasattr(net, "cross_attn")
    assert not any(k.startswith(("tok_embed", "text_encoder", "cross_attn", "fusion_norm")) for k in net.state_dict())
    assert _n_params(net) < BASE_PARAMS - 10_000
    assert net.head_hidden[0].in_features == SMALL["d_model"]  # the pooled image only, no [CLS] vector
    _forward_backward(net, images)
    assert net.pool_score.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        other = torch.tensor([[2, 11, 12, 3, 0, 0], [2, 13, 3, 0, 0, 0]])
        torch.testing.assert_close(net(images, TOKENS), net(images, other), atol=0, rtol=0)
        torch.testing.assert_close(net(images, TOKENS), net(images), atol=0, rtol=0)
    with pytest.raises(ValueError, match="text=False"):
        net.encode_text(TOKENS)
    with pytest.raises(ValueError, match="no text branch"):
        text_attributions(net, images[:1], TOKENS[:1], 0)
    assert text_attribution_table(net, None, np.ones((1, K))) is None  # the evaluate stage skips it


def test_spatial_attention_off(images):
    net = _net(spatial_attention=False)
    assert net.spatial_attn is None and _n_params(net) == BASE_PARAMS - (1024 + 1)  # the 1x1 conv's weights
    _forward_backward(net, images)
    assert net.last_attention is None
    on = _net()
    on(images, TOKENS)
    assert on.last_attention.shape == (2, 2, 2)


def test_bad_option_values():
    with pytest.raises(ValueError, match="gate must be one of"):
        _net(gate="cbam")
    with pytest.raises(ValueError, match="text must be a bool"):
        _net(text="no")
    with pytest.raises(ValueError, match="spatial_attention must be a bool"):
        _net(spatial_attention=0)


def test_config_keys_reach_the_network(repo_root):
    params = repo_root / "params.yaml"
    overrides = ["medical.model.gate=biological", "medical.model.text=false", "medical.model.spatial_attention=false"]
    hparams = MEDICAL.model_hparams(load_config("medical", MEDICAL.section, params, "demo", overrides), {})
    assert (hparams["gate"], hparams["text"], hparams["spatial_attention"]) == ("biological", False, False)
    defaults = MEDICAL.model_hparams(load_config("medical", MEDICAL.section, params, "demo"), {})
    assert (defaults["gate"], defaults["text"], defaults["spatial_attention"]) == ("none", True, True)
    with pytest.raises(Invalid, match="multimodal only"):
        ModelSection(name="densenet121", gate="matched").check()
    with pytest.raises(Invalid, match="multimodal only"):
        ModelSection(name="densenet121", text=False).check()


def test_served_model_rebuilds_the_options(tmp_path, images):
    from pipelines.medical.serving.pyfunc import ChestXrayClassifier
    from pipelines.medical.text import metadata_text, train_tokenizer

    texts = [metadata_text(a, s, v) for a, s, v in [(40, "M", "PA"), (65, "F", "AP"), (30, "F", "PA")]]
    tokenizer = train_tokenizer(texts, vocab_size=60, out_path=tmp_path / "tokenizer.json")
    options = {"gate": "matched", "text": False, "spatial_attention": False}
    hparams = {**SMALL, "max_len": 16, **options}
    torch.manual_seed(0)
    net = build_model("multimodal", K, tokenizer.get_vocab_size(), **hparams).eval()
    config = {"model": "multimodal", "hparams": hparams, "vocab_size": tokenizer.get_vocab_size()}
    config |= {"findings": [str(i) for i in range(K)], "size": N, "max_len": 16}
    (tmp_path / "model.json").write_text(json.dumps(config))
    (tmp_path / "thresholds.json").write_text("{}")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    served = ChestXrayClassifier().load(
        str(tmp_path / "model.json"),
        str(tmp_path / "weights.pt"),
        str(tmp_path / "tokenizer.json"),
        str(tmp_path / "thresholds.json"),
    )
    assert isinstance(served.net.gate, MatchedControl) and served.net.spatial_attn is None and not served.net.text
    films = [(np.asarray(images[i, 0]) * 255).astype(np.uint8) for i in range(2)]
    probs = served.predict_proba(films, texts[:2])
    assert probs.shape == (2, K) and np.isfinite(probs).all()
