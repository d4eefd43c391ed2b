"""Tests for pipelines/energy/models.py: shapes, RevIN, channel independence,
equivariance, baselines, that each network can learn, and the factory's refusals."""

import inspect
import math

import pytest
import torch

from pipelines.energy.models import (
    MODEL_HPARAMS,
    DLinear,
    NLinear,
    PatchTST,
    RevIN,
    SeasonalNaive,
    build_model,
)

SEQ, PRED, CH = 96, 24, 7
# a small PatchTST so the training-loop tests stay fast on 2 CPU cores
SMALL_PATCHTST = dict(patch_len=16, stride=8, n_layers=2, n_heads=4, d_model=16, d_ff=32)


def _all_models(seq_len, pred_len, n_channels):
    return {
        "patchtst": build_model("patchtst", seq_len, pred_len, n_channels),
        "dlinear": build_model("dlinear", seq_len, pred_len, n_channels),
        "dlinear_individual": build_model("dlinear", seq_len, pred_len, n_channels, individual=True),
        "nlinear": build_model("nlinear", seq_len, pred_len, n_channels),
        "seasonal_naive": build_model("seasonal_naive", seq_len, pred_len, n_channels, period=24),
    }


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("seq_len,pred_len", [(SEQ, PRED), (336, 96)])
def test_output_shapes(seq_len, pred_len):
    torch.manual_seed(0)
    x = torch.randn(4, seq_len, CH)
    for name, model in _all_models(seq_len, pred_len, CH).items():
        model.eval()
        with torch.no_grad():
            y = model(x)
        assert y.shape == (4, pred_len, CH), name
        assert torch.isfinite(y).all(), name


@pytest.mark.parametrize("seq_len,expected", [(336, 42), (512, 64)])
def test_patchtst_n_patches(seq_len, expected):
    model = PatchTST(seq_len, 96, CH, patch_len=16, stride=8)
    assert model.n_patches == expected
    assert model.pos_embed.shape == (expected, model.d_model)


def test_patchtst_no_padding_n_patches():
    assert PatchTST(336, 96, CH, padding_patch=None).n_patches == 41


def test_wrong_input_shape_raises():
    model = DLinear(SEQ, PRED, CH)
    with pytest.raises(ValueError, match="expects x of shape"):
        model(torch.randn(2, CH, SEQ))  # channels-first by mistake


# ----------------------------------------------------------------------------- RevIN


def test_revin_roundtrip_and_statistics():
    torch.manual_seed(0)
    # per-instance, per-channel different levels and scales
    x = torch.randn(8, SEQ, CH) * torch.rand(8, 1, CH).mul(5).add(0.5) + torch.randn(8, 1, CH) * 10
    revin = RevIN(CH)
    z = revin(x, "norm")
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(8, CH), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=1, unbiased=False), torch.ones(8, CH), atol=1e-4, rtol=0)
    torch.testing.assert_close(revin(z, "denorm"), x, atol=1e-5, rtol=1e-5)


def test_revin_roundtrip_with_trained_affine():
    torch.manual_seed(0)
    x = torch.randn(4, SEQ, CH) * 3 + 2
    revin = RevIN(CH)
    with torch.no_grad():
        revin.affine_weight.uniform_(0.5, 2.0)
        revin.affine_bias.normal_()
    torch.testing.assert_close(revin(revin(x, "norm"), "denorm"), x, atol=1e-5, rtol=1e-5)


def test_revin_statistics_are_detached():
    x = torch.randn(2, SEQ, CH, requires_grad=True)
    revin = RevIN(CH)
    revin(x, "norm")
    assert not revin.mean.requires_grad and not revin.stdev.requires_grad


def test_revin_errors():
    revin = RevIN(CH)
    with pytest.raises(RuntimeError, match="norm"):
        revin(torch.randn(2, PRED, CH), "denorm")
    with pytest.raises(ValueError, match="mode"):
        revin(torch.randn(2, SEQ, CH), "normalise")


# ----------------------------------------------------------------------------- channel independence


@pytest.mark.parametrize(
    "make",
    [
        lambda: PatchTST(SEQ, PRED, CH, **SMALL_PATCHTST),
        lambda: PatchTST(SEQ, PRED, CH, revin=False, **SMALL_PATCHTST),
        lambda: DLinear(SEQ, PRED, CH),
        lambda: DLinear(SEQ, PRED, CH, individual=True),
        lambda: NLinear(SEQ, PRED, CH),
    ],
    ids=["patchtst", "patchtst_norevin", "dlinear", "dlinear_individual", "nlinear"],
)
def test_channel_independence(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(3, SEQ, CH)
    j = 2
    x2 = x.clone()
    x2[:, :, j] = torch.randn(3, SEQ) * 4 + 3
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    others = [c for c in range(CH) if c != j]
    torch.testing.assert_close(y2[:, :, others], y[:, :, others], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(y2[:, :, j], y[:, :, j])  # the perturbed channel did change


# ----------------------------------------------------------------------------- equivariance


def test_patchtst_revin_scale_shift_equivariance():
    torch.manual_seed(0)
    model = PatchTST(SEQ, PRED, CH, **SMALL_PATCHTST).double().eval()  # affine params at init
    x = torch.randn(4, SEQ, CH, dtype=torch.float64)
    a = torch.rand(CH, dtype=torch.float64) * 5 + 0.5  # positive per-channel scale
    b = torch.randn(CH, dtype=torch.float64) * 10
    with torch.no_grad():
        y = model(x)
        y_ab = model(a * x + b)
    # not exact only because of RevIN's eps inside the square root (relative ~1e-5)
    torch.testing.assert_close(y_ab, a * y + b, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- SeasonalNaive


def test_seasonal_naive_exact_on_periodic_signal():
    period, seq_len, pred_len = 24, 100, 50  # seq_len not a multiple of the period on purpose
    t = torch.arange(seq_len + pred_len, dtype=torch.float32)
    torch.manual_seed(0)
    profile = torch.randn(period, CH)  # an arbitrary daily shape per channel
    series = profile[(t % period).long()]  # [T, CH]
    x, target = series[:seq_len].unsqueeze(0), series[seq_len:].unsqueeze(0)
    model = SeasonalNaive(seq_len, pred_len, period)
    assert sum(p.numel() for p in model.parameters()) == 0
    torch.testing.assert_close(model(x), target, atol=0, rtol=0)


def test_seasonal_naive_period_too_long():
    with pytest.raises(ValueError, match="period"):
        SeasonalNaive(seq_len=12, pred_len=24, period=24)
    with pytest.raises(ValueError, match="period"):
        build_model("seasonal_naive", 12, 24, CH, period=24)


# ----------------------------------------------------------------------------- learning


def _windows(series: torch.Tensor, seq_len: int, pred_len: int, step: int = 1):
    """All (history, target) windows of a [T, C] series."""
    idx = range(0, series.shape[0] - seq_len - pred_len + 1, step)
    x = torch.stack([series[i : i + seq_len] for i in idx])
    y = torch.stack([series[i + seq_len : i + seq_len + pred_len] for i in idx])
    return x, y


def _train(model, x, y, steps, lr, batch_size=None):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        if batch_size is None:
            xb, yb = x, y
        else:
            i = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
            xb, yb = x[i], y[i]
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _mse(model, x, y):
    model.eval()
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(x), y).item()


@pytest.mark.parametrize("cls", [DLinear, NLinear])
def test_linear_models_fit_trend_plus_sine(cls):
    torch.manual_seed(0)
    n_ch, T = 3, 700
    t = torch.arange(T, dtype=torch.float32).unsqueeze(1)
    slope = torch.tensor([[0.004, -0.003, 0.002]])
    phase = torch.tensor([[0.0, 1.0, 2.0]])
    series = slope * t + torch.sin(2 * math.pi * t / 24 + phase) + 0.1 * torch.randn(T, n_ch)
    x, y = _windows(series, SEQ, PRED, step=2)
    model = cls(SEQ, PRED, n_ch)
    before = _mse(model, x, y)
    _train(model, x, y, steps=300, lr=1e-2)
    after = _mse(model, x, y)
    assert after < 0.2 * before, (before, after)


def test_patchtst_learns_sine_and_grads_reach_embedding():
    torch.manual_seed(0)
    n_ch, T = 2, 600
    t = torch.arange(T, dtype=torch.float32).unsqueeze(1)
    series = torch.sin(2 * math.pi * t / 24 + torch.tensor([[0.0, 1.5]])) + 0.05 * torch.randn(T, n_ch)
    x, y = _windows(series, SEQ, PRED, step=3)
    model = PatchTST(SEQ, PRED, n_ch, dropout=0.0, **SMALL_PATCHTST)

    # one backward pass: the gradient must flow through head, encoder and embedding
    torch.nn.functional.mse_loss(model(x[:16]), y[:16]).backward()
    g = model.patch_embed.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0
    model.zero_grad()

    before = _mse(model, x, y)
    _train(model, x, y, steps=60, lr=3e-3, batch_size=32)
    after = _mse(model, x, y)
    assert after < 0.2 * before, (before, after)


# ----------------------------------------------------------------------------- factory and validation


def test_build_model_returns_the_right_classes():
    assert isinstance(build_model("patchtst", SEQ, PRED, CH, d_model=32, n_heads=8), PatchTST)
    assert isinstance(build_model("dlinear", SEQ, PRED, CH, kernel_size=13), DLinear)
    assert isinstance(build_model("nlinear", SEQ, PRED, CH), NLinear)
    assert isinstance(build_model("seasonal_naive", SEQ, PRED, CH, period=24), SeasonalNaive)


def test_build_model_unknown_name():
    with pytest.raises(ValueError, match="transformer") as err:
        build_model("transformer", SEQ, PRED, CH)
    for name in MODEL_HPARAMS:
        assert name in str(err.value)


def test_build_model_unknown_hparam():
    with pytest.raises(ValueError, match="kernel_size") as err:
        build_model("patchtst", SEQ, PRED, CH, kernel_size=25)  # a DLinear key, not PatchTST's
    assert "d_model" in str(err.value)  # lists the valid ones
    with pytest.raises(ValueError, match="d_model"):
        build_model("nlinear", SEQ, PRED, CH, d_model=16)


def test_build_model_missing_period():
    with pytest.raises(ValueError, match="period"):
        build_model("seasonal_naive", SEQ, PRED, CH)


def test_model_hparams_match_constructor_signatures():
    classes = {"patchtst": PatchTST, "dlinear": DLinear, "nlinear": NLinear, "seasonal_naive": SeasonalNaive}
    assert set(MODEL_HPARAMS) == set(classes)
    for name, cls in classes.items():
        params = set(inspect.signature(cls).parameters) - {"seq_len", "pred_len", "n_channels"}
        assert params == set(MODEL_HPARAMS[name]), name


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(d_model=18, n_heads=4), "divisible"),
        (dict(patch_len=128), "patch_len"),
        (dict(stride=0), "stride"),
        (dict(dropout=1.0), "dropout"),
        (dict(padding_patch="start"), "padding_patch"),
        (dict(revin="yes"), "revin"),
        (dict(n_layers=2.0), "n_layers"),
    ],
)
def test_patchtst_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchTST(SEQ, PRED, CH, **kwargs)


def test_dlinear_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        DLinear(SEQ, PRED, CH, kernel_size=24)
