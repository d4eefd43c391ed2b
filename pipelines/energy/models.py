"""Forecasting networks for the energy project, written out in one file.

Every network maps a (standardised) history window ``x`` of shape
``[batch, seq_len, n_channels]`` to a forecast ``[batch, pred_len, n_channels]``.
They are plain ``nn.Module``s; training lives in the LightningModule elsewhere.

Contents, top to bottom:
  1. RevIN          reversible instance normalisation   (Kim et al., ICLR 2022)
  2. PatchTST       patched channel-independent Transformer (Nie et al., ICLR 2023), with two
                    opt-in ablations: channel mixing, and the BiologicalAttention gate
                    (components/gating.py) on the encoder output
  3. DLinear        trend/seasonal decomposition + 2 linears (Zeng et al., AAAI 2023)
  4. NLinear        last-value normalisation + 1 linear  (same paper)
  5. SeasonalNaive  repeat the last period; the baseline every model must beat
  6. build_model    name + hyper-parameters -> module, refusing anything unknown

Defaults of PatchTST are the supervised PatchTST/42 recipe for ETTh1 from the
official repository (scripts/PatchTST/etth1.sh): seq_len 336, 3 layers, 4 heads,
d_model 16, d_ff 128, dropout 0.3, head dropout 0, patch 16, stride 8.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from components.arguments import check_bool as _check_bool
from components.arguments import check_int as _check_int
from components.arguments import check_prob as _check_prob
from components.arguments import model_class
from components.gating import GATES, build_gate

__all__ = [
    "RevIN",
    "PatchTST",
    "DLinear",
    "NLinear",
    "SeasonalNaive",
    "MODEL_HPARAMS",
    "build_model",
]


# -----------------------------------------------------------------------------
# argument checks (every constructor validates eagerly: a bad YAML value should
# fail at build time with its name, not as a shape error deep in forward)


def _check_input(x: torch.Tensor, seq_len: int, n_channels: int | None, model: str) -> None:
    # catches the classic [batch, channels, time] vs [batch, time, channels] mix-up
    if x.ndim != 3 or x.shape[1] != seq_len or (n_channels is not None and x.shape[2] != n_channels):
        want = f"[batch, {seq_len}, {n_channels if n_channels is not None else 'n_channels'}]"
        raise ValueError(f"{model} expects x of shape {want}, got {list(x.shape)}")


# -----------------------------------------------------------------------------
# 1. RevIN


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022).

    "norm" removes each series' own mean/std over the time axis (then applies a
    learnable per-channel affine map); "denorm" undoes both on the forecast. This
    handles the distribution shift between windows (e.g. a hotter summer) that a
    global standardisation cannot. The statistics are stored between the two calls.
    """

    def __init__(self, n_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        _check_int("n_channels", n_channels)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
            raise ValueError(f"eps must be a positive float, got {eps!r}")
        _check_bool("affine", affine)
        self.n_channels = n_channels
        self.eps = float(eps)  # 1e-5: added to the variance so a flat series does not divide by 0 (official code)
        self.affine = affine  # True: learnable per-channel scale/shift on the normalised series (paper, eq. 2)
        if affine:
            self.affine_weight = nn.Parameter(torch.ones(n_channels))
            self.affine_bias = nn.Parameter(torch.zeros(n_channels))
        # plain attributes, not buffers: they are per-batch state, not part of the checkpoint
        self.mean: torch.Tensor | None = None
        self.stdev: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_channels:
            raise ValueError(f"RevIN expects [batch, time, {self.n_channels}], got {list(x.shape)}")
        if mode == "norm":
            # detached: the statistics are treated as constants of the input, as in the official code
            self.mean = x.mean(dim=1, keepdim=True).detach()
            self.stdev = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
            x = (x - self.mean) / self.stdev
            if self.affine:
                x = x * self.affine_weight + self.affine_bias
            return x
        if mode == "denorm":
            if self.mean is None or self.stdev is None:
                raise RuntimeError("RevIN: call forward(x, 'norm') before forward(y, 'denorm')")
            if self.affine:
                # eps**2 keeps the division finite if a weight is ever driven to exactly 0
                x = (x - self.affine_bias) / (self.affine_weight + self.eps * self.eps)
            return x * self.stdev + self.mean
        raise ValueError(f"RevIN mode must be 'norm' or 'denorm', got {mode!r}")


# -----------------------------------------------------------------------------
# 2. PatchTST


class MultiHeadSelfAttention(nn.Module):
    """Standard multi-head self-attention over the patch tokens of one series."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # W_Q, W_K, W_V fused; biased as in the official code
        self.proj = nn.Linear(d_model, d_model)
        self.proj_dropout = nn.Dropout(dropout)  # official: proj_dropout = dropout; attention-map dropout is 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        # [B, N, D] -> [B, heads, N, D/heads]
        q, k, v = (t.view(B, N, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # no causal mask: the encoder sees the whole history window. Scale is 1/sqrt(d_head).
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(1, 2).reshape(B, N, D)
        return self.proj_dropout(self.proj(y))


class BatchNormTokens(nn.Module):
    """BatchNorm1d over d_model for [B, N, D] tokens (BatchNorm1d wants channels on dim 1).

    The paper uses BatchNorm instead of LayerNorm because it copes better with the
    outliers of time series (Zerveas et al. 2021); statistics pool over batch and patches.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class EncoderLayer(nn.Module):
    """Post-norm Transformer layer, as the official TSTEncoderLayer with pre_norm=False."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attn = MultiHeadSelfAttention(d_model, n_heads, dropout)
        self.dropout_attn = nn.Dropout(dropout)
        self.norm_attn = BatchNormTokens(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, d_ff),
            nn.GELU(),  # GELU, as in the official code (and BERT)
            nn.Dropout(dropout),
            nn.Linear(d_ff, d_model),
        )
        self.dropout_ffn = nn.Dropout(dropout)
        self.norm_ffn = BatchNormTokens(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_attn(x + self.dropout_attn(self.attn(x)))
        x = self.norm_ffn(x + self.dropout_ffn(self.ff(x)))
        return x


class ChannelMixing(nn.Module):
    """One attention step across the channels at each patch: the opt-in break of channel independence.

    [B, C, N, D] -> same shape: for every patch n, the C channel tokens attend to each other (no
    position code: channels are an unordered set of variables), residual + BatchNorm as in the encoder.
    Independent of n_channels, so the same weights serve ETT's 7 channels and OPSD's 3; 4D^2 + 6D
    parameters (1,120 at d_model 16). Placed after the encoder: each channel's series is encoded on its
    own first, then one step lets the head of channel c read the other channels at the same moment.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn = MultiHeadSelfAttention(d_model, n_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = BatchNormTokens(d_model)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, C, N, D = z.shape
        t = z.transpose(1, 2).reshape(B * N, C, D)  # one sequence of C channel tokens per patch
        t = self.norm(t + self.dropout(self.attn(t)))
        return t.reshape(B, N, C, D).transpose(1, 2)


class PatchTST(nn.Module):
    """PatchTST, supervised (Nie et al. 2023, "A Time Series is Worth 64 Words").

    Each channel is forecast on its own by the same weights (channel independence:
    channels are folded into the batch), from a sequence of overlapping patches
    that act as the Transformer's tokens. Pipeline per series:
      RevIN norm -> pad end -> patches -> linear embed + pos -> encoder -> flatten head -> RevIN denorm

    Residual attention (the official `res_attention=True`, adding the previous layer's
    attention scores) is not implemented; it is a minor variant of the recipe.

    Ablations (both off by default, and then the network and its state_dict are the paper's):
      channel_mixing  ChannelMixing on the encoder output [B, C, N, D]: channel independence broken
      gate            "biological" / "matched": components/gating.py on the encoder output, laid out
                      [B, time = N patches, space = C channels, d_model]. The temporal gate pools over
                      the channels, so a gated PatchTST is no longer strictly channel independent
                      either: one scalar per patch is shared by all channels.
    Order: encoder -> channel mixing -> gate -> flatten head.
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        n_channels: int,
        patch_len: int = 16,  # P = 16 (paper, PatchTST/42 and /64)
        stride: int = 8,  # S = 8, patches overlap by half (paper)
        n_layers: int = 3,  # 3 encoder layers (official etth1.sh; the paper's default elsewhere too)
        n_heads: int = 4,  # H = 4 on the small ETTh datasets (official etth1.sh; 16 on large ones)
        d_model: int = 16,  # D = 16 on ETTh (official etth1.sh; 128 on large datasets)
        d_ff: int = 128,  # F = 128 on ETTh (official etth1.sh; 256 on large datasets)
        dropout: float = 0.3,  # 0.3 on ETTh (official etth1.sh; 0.2 on large datasets)
        head_dropout: float = 0.0,  # 0 (official etth1.sh)
        revin: bool = True,  # instance normalisation on (paper, sec. 3.1)
        padding_patch: str | None = "end",  # "end": pad S copies of the last value -> one more patch (official)
        gate: str = "none",  # "none": no gate, the paper's network; "biological" / "matched" for the ablation
        channel_mixing: bool = False,  # False: channel independent, as the paper (its sec. 3.1 argues for it)
    ):
        super().__init__()
        for name, value in [
            ("seq_len", seq_len),
            ("pred_len", pred_len),
            ("n_channels", n_channels),
            ("patch_len", patch_len),
            ("stride", stride),
            ("n_layers", n_layers),
            ("n_heads", n_heads),
            ("d_model", d_model),
            ("d_ff", d_ff),
        ]:
            _check_int(name, value)
        _check_prob("dropout", dropout)
        _check_prob("head_dropout", head_dropout)
        _check_bool("revin", revin)
        _check_bool("channel_mixing", channel_mixing)
        if gate not in GATES:
            raise ValueError(f"gate must be one of {list(GATES)}, got {gate!r}")
        if patch_len > seq_len:
            raise ValueError(f"patch_len ({patch_len}) must be <= seq_len ({seq_len})")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if padding_patch not in ("end", None):
            raise ValueError(f"padding_patch must be 'end' or None, got {padding_patch!r}")

        self.seq_len, self.pred_len, self.n_channels = seq_len, pred_len, n_channels
        self.patch_len, self.stride, self.padding_patch = patch_len, stride, padding_patch
        self.d_model = d_model
        # "end" padding appends `stride` copies of the last value, so the tail of the
        # window (the most informative part) always lands in a full final patch.
        self.pad = stride if padding_patch == "end" else 0
        # 336/16/8: (336 + 8 - 16) // 8 + 1 = 42 (PatchTST/42);  512/16/8: 64 (PatchTST/64)
        self.n_patches = (seq_len + self.pad - patch_len) // stride + 1

        self.revin = RevIN(n_channels) if revin else None
        self.patch_embed = nn.Linear(patch_len, d_model)  # W_p: one patch -> one token
        # learnable positional encoding; the official default ("zeros", learn_pe) inits U(-0.02, 0.02)
        self.pos_embed = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))
        self.embed_dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        # flatten head: all tokens of a series -> the whole horizon in one linear map
        # (the direct multi-step forecast; no autoregressive error accumulation)
        self.head = nn.Linear(self.n_patches * d_model, pred_len)
        self.head_dropout = nn.Dropout(head_dropout)
        # the ablations; None when off so the default state_dict (saved and served models) is unchanged
        self.channel_mixer = ChannelMixing(d_model, n_heads, dropout) if channel_mixing else None
        self.gate = build_gate(gate, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.seq_len, self.n_channels, "PatchTST")
        B, L, C = x.shape
        if self.revin is not None:
            x = self.revin(x, "norm")
        # channel independence: [B, L, C] -> [B*C, L]; every channel is its own sample
        z = x.permute(0, 2, 1).reshape(B * C, L)
        if self.pad:
            z = torch.cat([z, z[:, -1:].expand(-1, self.pad)], dim=1)
        z = z.unfold(dimension=1, size=self.patch_len, step=self.stride)  # [B*C, n_patches, patch_len]
        z = self.embed_dropout(self.patch_embed(z) + self.pos_embed)  # [B*C, n_patches, d_model]
        for layer in self.encoder:
            z = layer(z)
        if self.channel_mixer is not None or self.gate is not None:
            z = z.reshape(B, C, self.n_patches, self.d_model)
            if self.channel_mixer is not None:
                z = self.channel_mixer(z)
            if self.gate is not None:  # the gate's layout is [batch, time, space, features]
                z = self.gate(z.transpose(1, 2)).transpose(1, 2)
            z = z.reshape(B * C, self.n_patches, self.d_model)
        z = self.head_dropout(self.head(z.flatten(start_dim=1)))  # [B*C, pred_len]
        y = z.reshape(B, C, self.pred_len).permute(0, 2, 1)  # [B, pred_len, C]
        if self.revin is not None:
            y = self.revin(y, "denorm")
        return y


# -----------------------------------------------------------------------------
# 3. DLinear


class MovingAverageDecomposition(nn.Module):
    """x = trend + seasonal, trend = centred moving average (Autoformer's block, reused by DLinear)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.avg = nn.AvgPool1d(kernel_size, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # replicate-pad both ends by (k-1)/2 so the trend keeps all seq_len steps and the
        # edges average real values instead of zeros (which would drag the trend to 0)
        half = (self.kernel_size - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, half, -1), x, x[:, -1:].expand(-1, half, -1)], dim=1)
        trend = self.avg(padded.transpose(1, 2)).transpose(1, 2)  # AvgPool1d pools the last axis
        return x - trend, trend


class DLinear(nn.Module):
    """DLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series Forecasting?").

    Decompose into trend and seasonal parts, map each to the horizon with one linear
    layer over time, and sum. Linear over time (not over channels) makes it channel
    independent; `individual` gives each channel its own pair of layers.
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        n_channels: int,
        kernel_size: int = 25,  # moving-average window 25 (paper, after Autoformer)
        individual: bool = False,  # False: one pair of linears shared by all channels (paper's default)
    ):
        super().__init__()
        for name, value in [
            ("seq_len", seq_len),
            ("pred_len", pred_len),
            ("n_channels", n_channels),
            ("kernel_size", kernel_size),
        ]:
            _check_int(name, value)
        _check_bool("individual", individual)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so the moving average is centred, got {kernel_size}")
        self.seq_len, self.pred_len, self.n_channels = seq_len, pred_len, n_channels
        self.individual = individual
        self.decomposition = MovingAverageDecomposition(kernel_size)
        n = n_channels if individual else 1
        self.linear_seasonal = nn.ModuleList(nn.Linear(seq_len, pred_len) for _ in range(n))
        self.linear_trend = nn.ModuleList(nn.Linear(seq_len, pred_len) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.seq_len, self.n_channels, "DLinear")
        seasonal, trend = self.decomposition(x)
        seasonal, trend = seasonal.transpose(1, 2), trend.transpose(1, 2)  # [B, C, L]: Linear acts on time
        if self.individual:
            y = torch.stack(
                [
                    self.linear_seasonal[c](seasonal[:, c]) + self.linear_trend[c](trend[:, c])
                    for c in range(self.n_channels)
                ],
                dim=1,
            )
        else:
            y = self.linear_seasonal[0](seasonal) + self.linear_trend[0](trend)
        return y.transpose(1, 2)  # [B, pred_len, C]


# -----------------------------------------------------------------------------
# 4. NLinear


class NLinear(nn.Module):
    """NLinear (Zeng et al. 2023): subtract the last value, one linear over time, add it back.

    The subtraction is a cheap answer to distribution shift: the linear layer only
    has to model the change relative to "now", not the level.
    """

    def __init__(self, seq_len: int, pred_len: int, n_channels: int):
        super().__init__()
        for name, value in [("seq_len", seq_len), ("pred_len", pred_len), ("n_channels", n_channels)]:
            _check_int(name, value)
        self.seq_len, self.pred_len, self.n_channels = seq_len, pred_len, n_channels
        self.linear = nn.Linear(seq_len, pred_len)  # shared by all channels (paper's default)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.seq_len, self.n_channels, "NLinear")
        last = x[:, -1:, :].detach()  # detached as in the official code: a constant offset
        y = self.linear((x - last).transpose(1, 2)).transpose(1, 2)
        return y + last


# -----------------------------------------------------------------------------
# 5. SeasonalNaive


class SeasonalNaive(nn.Module):
    """Forecast y[t] = y[t - period]: tile the last `period` steps over the horizon.

    No parameters. For hourly ETTh data the period is 24 (one day). Any learned model
    that does not beat this on the test split is not learning anything useful.
    """

    def __init__(self, seq_len: int, pred_len: int, period: int):
        super().__init__()
        for name, value in [("seq_len", seq_len), ("pred_len", pred_len), ("period", period)]:
            _check_int(name, value)
        if period > seq_len:
            raise ValueError(f"period ({period}) must be <= seq_len ({seq_len}): the history must hold one period")
        self.seq_len, self.pred_len, self.period = seq_len, pred_len, period

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.seq_len, None, "SeasonalNaive")
        last = x[:, -self.period :, :]
        reps = math.ceil(self.pred_len / self.period)
        # step h of the horizon is time seq_len + h, i.e. phase h mod period of the last cycle
        return last.repeat(1, reps, 1)[:, : self.pred_len]


# -----------------------------------------------------------------------------
# 6. factory

_MODELS: dict[str, type[nn.Module]] = {
    "patchtst": PatchTST,
    "dlinear": DLinear,
    "nlinear": NLinear,
    "seasonal_naive": SeasonalNaive,
}

# Hyper-parameters each model accepts besides (seq_len, pred_len, n_channels). The YAML
# config has one section shared by all models; the caller picks the keys listed here.
MODEL_HPARAMS: dict[str, tuple[str, ...]] = {
    "patchtst": (
        "patch_len",
        "stride",
        "n_layers",
        "n_heads",
        "d_model",
        "d_ff",
        "dropout",
        "head_dropout",
        "revin",
        "padding_patch",
        "gate",
        "channel_mixing",
    ),
    "dlinear": ("kernel_size", "individual"),
    "nlinear": (),
    "seasonal_naive": ("period",),
}


def build_model(name: str, seq_len: int, pred_len: int, n_channels: int, **hparams) -> nn.Module:
    """Build a forecaster by name. Unknown names and hyper-parameters raise ValueError.

    SeasonalNaive does not take n_channels (it has no per-channel state) and needs `period`.
    """
    cls = model_class(_MODELS, MODEL_HPARAMS, name, hparams)
    # a missing required hyper-parameter (SeasonalNaive's period) is a ValueError too, not a TypeError
    required = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.name in MODEL_HPARAMS[name] and p.default is inspect.Parameter.empty
    ]
    missing = [p for p in required if p not in hparams]
    if missing:
        raise ValueError(f"model {name!r} requires hyper-parameter(s) {missing}")
    if name == "seasonal_naive":
        return cls(seq_len, pred_len, **hparams)
    return cls(seq_len, pred_len, n_channels, **hparams)
