"""Tests for components/gating.py: shapes, gate ranges, the start near the identity, gradients to both
gates, the control's matched parameter count, and that a training step makes the gate input-dependent."""

import math

import pytest
import torch

from components.gating import GATE_INIT, GATES, BiologicalAttention, MatchedControl, build_gate

B, T, S, F = 3, 5, 7, 16  # a small [batch, time, space, features] tensor


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, S, F, generator=torch.Generator().manual_seed(seed))


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cls", [BiologicalAttention, MatchedControl])
def test_shapes_and_length_one_time_axis(cls):
    gate = cls(F)
    assert gate(_x()).shape == (B, T, S, F)
    one_film = _x()[:, :1]  # the medical case: T = 1
    assert gate(one_film).shape == (B, 1, S, F)
    with pytest.raises(ValueError, match="time, space"):
        gate(torch.randn(B, S, F))


def test_gates_within_zero_one_and_per_axis_shapes():
    torch.manual_seed(0)
    gate = BiologicalAttention(F)
    for p in gate.parameters():  # away from the constant init (float32 sigmoid rounds to 1 past ~17)
        torch.nn.init.normal_(p, std=0.5)
    g_s, g_t = gate.gates(_x())
    assert g_s.shape == (B, 1, S, 1) and g_t.shape == (B, T, 1, 1)
    for g in (g_s, g_t):
        assert (g > 0).all() and (g < 1).all()
        assert g.std() > 0.01  # input-dependent once the output weights are non-zero


def test_start_is_a_known_constant_scale_and_control_is_identity():
    x = _x()
    torch.testing.assert_close(BiologicalAttention(F)(x), x * GATE_INIT**2)
    torch.testing.assert_close(MatchedControl(F)(x), x)


def test_control_has_exactly_the_gates_parameter_count():
    for n_features, hidden in [(F, None), (1024, None), (16, 8)]:
        bio, ctl = BiologicalAttention(n_features, hidden), MatchedControl(n_features, hidden)
        r = bio.hidden
        assert _n_params(bio) == _n_params(ctl) == 2 * (n_features * r + 2 * r + 1)
    assert BiologicalAttention(1024).hidden == 64 and BiologicalAttention(16).hidden == 4


@pytest.mark.parametrize("cls", [BiologicalAttention, MatchedControl])
def test_gradient_reaches_both_gates(cls):
    gate = cls(F)
    x = _x().requires_grad_()
    (gate(x) * torch.randn(B, T, S, F)).sum().backward()
    for axis in (gate.spatial, gate.temporal):
        g = axis.fc2.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_a_training_step_makes_the_gate_change_the_output():
    torch.manual_seed(0)
    gate = BiologicalAttention(F)
    x = _x()
    # target: keep the first half of the positions, silence the rest; only a spatial gate can do it
    target = x.clone()
    target[:, :, S // 2 :] = 0
    before = gate(x).detach()
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(gate(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = gate(x).detach()
    # no longer a constant multiple of x: the gate now differs between positions
    ratio = after / x
    assert ratio.std() > 0.01, ratio.std()
    assert not torch.allclose(after, before)
    assert losses[-1] < 0.8 * losses[0], (losses[0], losses[-1])
    # after the first step the hidden layer is trained too (w2 was zero only at init)
    assert gate.spatial.fc1.weight.grad.abs().sum() > 0


def test_build_gate():
    assert build_gate("none", F) is None
    assert isinstance(build_gate("biological", F), BiologicalAttention)
    assert isinstance(build_gate("matched", F), MatchedControl)
    assert GATES == ("none", "biological", "matched")
    with pytest.raises(ValueError, match="gate must be one of"):
        build_gate("cbam", F)
    with pytest.raises(ValueError, match="n_features"):
        build_gate("biological", 0)
    assert math.isclose(torch.sigmoid(BiologicalAttention(F).spatial.fc2.bias).item(), GATE_INIT, rel_tol=1e-6)
