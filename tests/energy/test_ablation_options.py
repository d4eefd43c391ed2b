"""The PatchTST ablation options (model.gate, model.channel_mixing): off by default and then the paper's
network bit for bit, really present when on, trainable, carried through the config and the served model."""

from __future__ import annotations

import json

import pytest
import torch

from components.config import ConfigError, Invalid, load_config
from components.gating import BiologicalAttention, MatchedControl
from pipelines.energy.config import ModelSection
from pipelines.energy.models import ChannelMixing, PatchTST, build_model
from pipelines.energy.project import ENERGY
from pipelines.energy.pyfunc import EnergyForecaster

SEQ, PRED, CH = 32, 8, 3
TINY = dict(patch_len=8, stride=4, n_layers=1, n_heads=2, d_model=16, d_ff=16, dropout=0.0)  # 8 patches


def _tiny(**options) -> PatchTST:
    torch.manual_seed(0)
    return PatchTST(SEQ, PRED, CH, **TINY, **options)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(4, SEQ, CH, generator=torch.Generator().manual_seed(seed))


def test_defaults_are_the_paper_network():
    plain, explicit = _tiny(), _tiny(gate="none", channel_mixing=False)
    assert plain.gate is None and plain.channel_mixer is None
    assert list(plain.state_dict()) == list(explicit.state_dict())  # saved models load strictly
    assert not any(k.startswith(("gate.", "channel_mixer.")) for k in plain.state_dict())
    plain.eval(), explicit.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(_x()), explicit(_x()), atol=0, rtol=0)


@pytest.mark.parametrize("kind,cls", [("biological", BiologicalAttention), ("matched", MatchedControl)])
def test_gate_is_present_trainable_and_matched(kind, cls):
    model = _tiny(gate=kind)
    assert isinstance(model.gate, cls)
    r = model.gate.hidden  # max(4, 16 // 16) = 4
    assert _n_params(model) - _n_params(_tiny()) == 2 * (16 * r + 2 * r + 1)
    y = model(_x())
    assert y.shape == (4, PRED, CH) and torch.isfinite(y).all()
    torch.nn.functional.mse_loss(y, torch.zeros_like(y)).backward()
    for axis in (model.gate.spatial, model.gate.temporal):
        assert axis.fc2.weight.grad.abs().sum() > 0


def test_gate_and_control_have_the_same_parameter_count():
    assert _n_params(_tiny(gate="biological")) == _n_params(_tiny(gate="matched"))


def test_gate_axes_are_patches_and_channels():
    model = _tiny(gate="biological").eval()
    seen = {}
    # a hook that returns None keeps the output (dict.update does; setdefault would replace it)
    model.gate.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        model(_x())
    assert seen["x"].shape == (4, model.n_patches, CH, 16)  # [batch, time = patches, space = channels, d_model]


def _others_move(model: torch.nn.Module, j: int = 1) -> bool:
    """Does perturbing channel j change the forecast of the other channels?"""
    model.eval()
    x = _x()
    x2 = x.clone()
    x2[:, :, j] = torch.randn(4, SEQ, generator=torch.Generator().manual_seed(5)) * 4 + 3
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    others = [c for c in range(CH) if c != j]
    return not torch.allclose(y2[:, :, others], y[:, :, others], atol=1e-6, rtol=1e-6)


def test_channel_mixing_is_present_and_breaks_channel_independence():
    mixed = _tiny(channel_mixing=True)
    assert isinstance(mixed.channel_mixer, ChannelMixing)
    assert _n_params(mixed) - _n_params(_tiny()) == 4 * 16 * 16 + 6 * 16
    assert not _others_move(_tiny()) and _others_move(mixed)
    mixed.train()
    y = mixed(_x())
    y.pow(2).mean().backward()
    assert mixed.channel_mixer.attn.qkv.weight.grad.abs().sum() > 0


def test_trained_gate_shares_one_scalar_per_patch_across_channels():
    # the README's caveat: the temporal gate pools over channels, so channels see each other a little
    model = _tiny(gate="biological")
    assert not _others_move(model)  # at init the gate is a constant: still channel independent
    with torch.no_grad():
        model.gate.temporal.fc2.weight.normal_()
    assert _others_move(model)


def test_config_keys_reach_the_network(repo_root):
    overrides = ["energy.model.gate=matched", "energy.model.channel_mixing=true"]
    cfg = load_config("energy", ENERGY.section, repo_root / "params.yaml", "demo", overrides)
    hparams = ENERGY.model_hparams(cfg, {})
    assert hparams["gate"] == "matched" and hparams["channel_mixing"] is True
    defaults = ENERGY.model_hparams(load_config("energy", ENERGY.section, repo_root / "params.yaml", "demo"), {})
    assert defaults["gate"] == "none" and defaults["channel_mixing"] is False
    with pytest.raises(ConfigError, match="gate"):
        load_config("energy", ENERGY.section, repo_root / "params.yaml", "demo", ["energy.model.gate=cbam"])
    with pytest.raises(Invalid, match="patchtst only"):
        ModelSection(name="dlinear", gate="biological").check()
    with pytest.raises(Invalid, match="patchtst only"):
        ModelSection(name="nlinear", channel_mixing=True).check()


@pytest.mark.parametrize("hparams", [{}, {"gate": "biological", "channel_mixing": True}], ids=["old", "ablation"])
def test_served_model_rebuilds_the_options(tmp_path, hparams):
    net = build_model("patchtst", SEQ, PRED, CH, **TINY, **hparams).eval()
    config = {
        "model": "patchtst",
        "hparams": {**TINY, **hparams},  # an old model.json has no gate / channel_mixing: the defaults
        "seq_len": SEQ,
        "horizon": PRED,
        "columns": ["a", "b", "c"],
        "time_column": "date",
        "freq_seconds": 3600,
        "ranges": {},
    }
    (tmp_path / "model.json").write_text(json.dumps(config))
    (tmp_path / "scaler.json").write_text(json.dumps({"mean": [0.0] * CH, "scale": [1.0] * CH}))
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    served = EnergyForecaster.from_dir(tmp_path)
    assert (served.net.gate is None) == (not hparams)
    history = _x().numpy()
    with torch.no_grad():
        expected = net(torch.from_numpy(history)).numpy()
    torch.testing.assert_close(torch.from_numpy(served.forecast_array(history)), torch.from_numpy(expected))
