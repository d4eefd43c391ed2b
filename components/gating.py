"""BiologicalAttention: a spatial and a temporal sigmoid gate multiplied into the features, and its
parameter-matched additive control. Plain ``nn.Module``s shared by the energy and medical networks.

Inspired by selective attention in the brain (a multiplicative gain on the responses at attended
locations and moments), built like CBAM's gates (Woo et al. 2018) and squeeze-excitation (Hu et al.
2018), but on the two axes instead of on the feature channels.

Layout: ``x`` is [B, T, S, F] = (batch, time, space, features). Each caller says what its axes are:
  energy  (PatchTST encoder output)  T = the patches of the history window (time order),
                                     S = the channels (variables: loads, oil temperature), F = d_model
  medical (DenseNet121 feature map)  T = the films of one sample: 1, the model reads one film per
                                     sample, so the temporal gate is one learned scalar per film,
                                     S = the h*w positions of the feature map, F = 1024 channels

Equations. For one axis the descriptor of index i is the feature vector pooled over the OTHER
non-feature axis, by mean and by max (CBAM pools both: the mean sees spread evidence, the max a
single strong response):
    spatial,  s = 1..S:  a_s = mean_t x[t, s, :],   m_s = max_t x[t, s, :]      (in R^F)
    temporal, t = 1..T:  a_t = mean_s x[t, s, :],   m_t = max_s x[t, s, :]      (in R^F)
and its score is one small MLP shared by every index of that axis (its own MLP per axis):
    u(a, m) = w2 . (relu(W1 a + b1) + relu(W1 m + b1)) + b2,   W1: r x F, w2: r, b2: scalar
BiologicalAttention (a gain in (0, 1) per position and per moment):
    g_S[s] = sigmoid(u_S(a_s, m_s)),   g_T[t] = sigmoid(u_T(a_t, m_t))
    y[t, s, f] = x[t, s, f] * g_S[s] * g_T[t]
MatchedControl (the same two MLPs, the same inputs, the same parameters, but added, not multiplied):
    y[t, s, f] = x[t, s, f] + u_S(a_s, m_s) + u_T(a_t, m_t)
The control can shift each position / moment by a learned function of the same statistics but cannot
rescale it, so "gate vs control" separates multiplicative gating from "more parameters and more
computation on pooled statistics". Parameter count of each: 2 (F r + 2 r + 1).

Why the descriptor keeps F (pooled over one axis, not over the features as CBAM's spatial gate does):
after a normalisation layer (PatchTST's BatchNorm) the mean and max over the features of a token carry
little of *what* the token holds; the r-wide bottleneck keeps the gate small while letting it learn
which features mark a relevant position or moment.

Initialisation: w2 = 0, so at init every gate is the same constant for every input: g = sigmoid(b2).
b2 = logit(0.95): the gated features start as the ungated ones times 0.95**2 ~= 0.90 (a uniform scale,
which the following normalisation / linear layer largely absorbs), with sigmoid'(b2) ~= 0.05 still large
enough to learn; b2 = 0 would start at a 0.25 scale (0.5 per gate), b2 >> 3 would saturate the sigmoid. The control's
b2 = 0, so it starts as the exact identity. Only w2 and b2 get a gradient on the first step (W1 gets
one once w2 is non-zero), the usual price of a zero-initialised branch.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from components.arguments import check_int

__all__ = ["GATES", "AxisScore", "BiologicalAttention", "MatchedControl", "build_gate"]

GATES = ("none", "biological", "matched")  # the values of each project's `model.gate`
GATE_INIT = 0.95  # each gate's value at init: near the identity, sigmoid not saturated (see above)


class AxisScore(nn.Module):
    """u(a, m) of the module docstring: a shared bottleneck MLP on the mean- and max-pooled descriptors."""

    def __init__(self, n_features: int, hidden: int, init_bias: float):
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)  # W1, b1: F -> r, shared by the mean and the max descriptor
        self.fc2 = nn.Linear(hidden, 1)  # w2, b2: r -> one score per index
        nn.init.zeros_(self.fc2.weight)  # w2 = 0: the score starts as the constant b2 for every input
        nn.init.constant_(self.fc2.bias, init_bias)

    def forward(self, x: torch.Tensor, pool_dim: int) -> torch.Tensor:
        """x [B, T, S, F] pooled over `pool_dim` (1: time, 2: space) -> scores [B, n, 1], n the other axis."""
        mean, peak = x.mean(dim=pool_dim), x.amax(dim=pool_dim)
        return self.fc2(torch.relu(self.fc1(mean)) + torch.relu(self.fc1(peak)))


class _TwoAxis(nn.Module):
    """The shared part: argument checks and one AxisScore per axis."""

    init_bias = 0.0

    def __init__(
        self,
        n_features: int,
        hidden: int | None = None,  # None: max(4, F // 16), SE's reduction 16 with a floor for narrow models
    ):
        super().__init__()
        check_int("n_features", n_features)
        hidden = max(4, n_features // 16) if hidden is None else hidden
        check_int("hidden", hidden)
        self.n_features, self.hidden = n_features, hidden
        self.spatial = AxisScore(n_features, hidden, self.init_bias)
        self.temporal = AxisScore(n_features, hidden, self.init_bias)

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, S, F] -> (spatial scores [B, 1, S, 1], temporal scores [B, T, 1, 1])."""
        if x.ndim != 4 or x.shape[-1] != self.n_features:
            raise ValueError(
                f"{type(self).__name__} expects x [batch, time, space, {self.n_features}], got {list(x.shape)}"
            )
        # spatial: pooled over time (dim 1); temporal: pooled over space (dim 2)
        return self.spatial(x, 1).unsqueeze(1), self.temporal(x, 2).unsqueeze(2)


class BiologicalAttention(_TwoAxis):
    """y = x * sigmoid(u_S) * sigmoid(u_T): a gain in (0, 1) per position and per moment (module docstring)."""

    init_bias = math.log(GATE_INIT / (1 - GATE_INIT))  # logit(0.95) ~= 2.94

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(spatial gate [B, 1, S, 1], temporal gate [B, T, 1, 1]), each in (0, 1)."""
        s, t = self.scores(x)
        return torch.sigmoid(s), torch.sigmoid(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g_s, g_t = self.gates(x)
        return x * g_s * g_t


class MatchedControl(_TwoAxis):
    """y = x + u_S + u_T: BiologicalAttention's networks and parameters, added instead of multiplied."""

    init_bias = 0.0  # with w2 = 0 the control starts as the exact identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, t = self.scores(x)
        return x + s + t


def build_gate(kind: str, n_features: int, hidden: int | None = None) -> nn.Module | None:
    """`model.gate` -> the module (None for "none", so the ungated network and its state_dict are unchanged)."""
    if kind not in GATES:
        raise ValueError(f"gate must be one of {list(GATES)}, got {kind!r}")
    if kind == "none":
        return None
    cls = BiologicalAttention if kind == "biological" else MatchedControl
    return cls(n_features, hidden)
