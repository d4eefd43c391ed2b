"""Chest X-ray classifiers for the medical project, written out in one file.

Every network maps a batch of grey-scale films ``image`` [B, in_channels, H, W] (intensity in
[0, 1]) and, optionally, what the clinician knows before reading the film as token ids ``tokens``
[B, T] (0 = padding, [CLS] first; see text.py) to finding logits [B, n_findings]. Findings
co-occur, so the task is multi-label: one sigmoid per finding, never a softmax over them.
They are plain ``nn.Module``s; training lives in the LightningModule (module.py).

Contents, top to bottom:
  1. load_densenet_weights  a local state_dict -> MONAI DenseNet121 (ours, torchvision, CheXNet)
  2. DenseNet121Baseline    CheXNet's network (Rajpurkar et al. 2017), image only
  3. MultiModalMedicalNet   DenseNet121 features + spatial attention gate, a text Transformer,
                            image-to-text cross-attention, attention pooling, MLP head; ablations:
                            BiologicalAttention on the feature map (components/gating.py), text
                            branch off, spatial attention gate off
  4. build_model            name + hyper-parameters -> module, refusing anything unknown
  5. embedding              the penultimate representation (for embedding-drift monitoring)

Both networks expose ``gradcam_layer`` (the name, for MONAI's GradCAM, of the ReLU on the last
feature map) and ``forward_features`` (the input of the final linear layer). Weights are only ever
read from a local file: nothing here downloads.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from pathlib import Path

import torch
import torch.nn as nn
from monai.networks.nets import DenseNet121

from components.arguments import check_bool as _check_bool
from components.arguments import check_int as _check_int
from components.arguments import check_prob as _check_prob
from components.arguments import model_class
from components.gating import GATES, build_gate

__all__ = [
    "load_densenet_weights",
    "DenseNet121Baseline",
    "MultiModalMedicalNet",
    "MODEL_HPARAMS",
    "build_model",
    "embedding",
]

log = logging.getLogger("scifolio.medical.models")

# DenseNet121 halves the resolution five times (conv0, pool0, three transitions): 224 -> 7x7
DENSENET_STRIDE = 32
# largest feature grid the multimodal model's 2-D position table covers: 1024 px input (NIH's
# full resolution) / 32 = 32 cells per side
MAX_GRID = 32


# -----------------------------------------------------------------------------
# argument checks (every constructor validates eagerly: a bad YAML value should
# fail at build time with its name, not as a shape error deep in forward)


def _check_path(name: str, value) -> None:
    if value is not None and not isinstance(value, (str, Path)):
        raise ValueError(f"{name} must be a file path or None, got {value!r} ({type(value).__name__})")


def _check_image(image: torch.Tensor, in_channels: int, model: str) -> None:
    # catches [B, H, W] (channel axis dropped) and RGB films fed to a grey-scale network
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != in_channels:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{model} expects image of shape [batch, {in_channels}, H, W], got {shape}")
    if min(image.shape[2:]) < DENSENET_STRIDE:
        raise ValueError(
            f"{model} needs H and W >= {DENSENET_STRIDE} (DenseNet121's total stride), got {list(image.shape[2:])}"
        )


# -----------------------------------------------------------------------------
# 1. pretrained weights from a local file

# torchvision (and the CheXNet reimplementations built on it) name a dense layer's modules
# `denselayer1.norm1`, before 2018 `denselayer1.norm.1`; MONAI nests them as `denselayer1.layers.norm1`
_TORCHVISION_LAYER = re.compile(r"(denselayer\d+)\.(norm|relu|conv)\.?([12])\.")


def _densenet_key(key: str) -> str:
    """One saved key in MONAI DenseNet121's naming; keys of other modules come back unchanged."""
    # cut any wrapper prefix: "module." (DataParallel), "net." (DenseNet121Baseline), "net.net."
    # (its LightningModule), "module.densenet121." (the common CheXNet reimplementation)
    for anchor in ("features.", "class_layers.", "classifier."):
        i = key.find(anchor)
        if i == 0 or (i > 0 and key[i - 1] == "."):
            key = key[i:]
            break
    else:
        return key
    if ".layers." not in key:
        key = _TORCHVISION_LAYER.sub(r"\1.layers.\2\3.", key)
    # torchvision's `classifier` is one Linear; CheXNet wraps it as Sequential(Linear, Sigmoid)
    return re.sub(r"^classifier\.(?:0\.)?", "class_layers.out.", key)


def _adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An RGB stem [out, 3, k, k] for `in_channels` inputs (the timm recipe)."""
    if in_channels == 1:
        # a grey film is R = G = B: summing the three filters gives the RGB network's exact response
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_channels / weight.shape[1])
    # tile, then rescale so the summed response to a uniform input is unchanged
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def _short(keys: list[str], n: int = 5) -> str:
    return f"{keys[:n]}{' ...' if len(keys) > n else ''}"


def load_densenet_weights(net: nn.Module, path: str | Path, head: bool = True) -> dict[str, list[str]]:
    """Load a local DenseNet-121 state_dict into a MONAI DenseNet121, non-strictly; never downloads.

    Accepts MONAI's naming, torchvision's (and its pre-2018 variant), CheXNet-style wrappers and
    our own checkpoints (DenseNet121Baseline, MultiModalMedicalNet, a Lightning checkpoint's
    `state_dict`). An RGB stem is adapted to `in_channels`; tensors whose shape still differs (a
    head for another number of findings) are skipped. `head=False` leaves the classifier out
    (the multimodal model keeps only the features). Missing, unexpected and skipped keys are
    logged in one line and returned; a file of which nothing matches is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {path} (weights are read from a local file only, never downloaded)"
        )
    try:
        # weights_only: a checkpoint is data, never code to unpickle
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a state_dict file"
        raise ValueError(f"{path}: cannot be read as a state_dict with weights_only=True: {e}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a Lightning / CheXNet checkpoint wraps the weights
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")

    own = net.state_dict()
    wanted = {k for k in own if head or not k.startswith("class_layers.")}
    loaded: dict[str, torch.Tensor] = {}
    unexpected, skipped, adapted = [], [], []
    for key, value in obj.items():
        k = _densenet_key(key)
        if k not in wanted:
            if head or not k.startswith("class_layers."):
                unexpected.append(key)
            continue
        want = own[k].shape
        if (
            k == "features.conv0.weight"
            and value.ndim == 4
            and value.shape[1] != want[1]
            and value.shape[0] == want[0]
            and value.shape[2:] == want[2:]
        ):
            value = _adapt_input_conv(value, want[1])
            adapted.append(f"{key} {value.shape[1]}->{want[1]} channels")
        if value.shape != want:
            skipped.append(f"{key} {tuple(value.shape)}!={tuple(want)}")
            continue
        loaded[k] = value
    if not loaded:
        raise ValueError(
            f"{path}: none of its {len(obj)} tensors matches a DenseNet121 parameter (first keys: {list(obj)[:5]})"
        )
    missing = sorted(wanted - set(loaded))
    net.load_state_dict(loaded, strict=False)
    log.info(
        "%s: loaded %d/%d tensors; missing %d %s; unexpected %d %s; shape-skipped %d %s; adapted %s",
        path,
        len(loaded),
        len(wanted),
        len(missing),
        _short(missing),
        len(unexpected),
        _short(unexpected),
        len(skipped),
        _short(skipped),
        adapted or "none",
    )
    return {"missing": missing, "unexpected": unexpected, "skipped": skipped, "adapted": adapted}


# -----------------------------------------------------------------------------
# 2. DenseNet121Baseline


class DenseNet121Baseline(nn.Module):
    """CheXNet's network (Rajpurkar et al. 2017): DenseNet-121, global average pool, one linear layer.

    MONAI's DenseNet121 is the same architecture as torchvision's (growth 32, blocks 6-12-24-16,
    1024 features); here with a grey-scale stem (1 input channel) and 14 outputs: ~6.97M parameters.
    CheXNet starts from ImageNet weights; pass them (or any DenseNet-121 checkpoint) as a local
    file through `pretrained_path`.
    """

    # MONAI's GradCAM hooks this module by name: the ReLU on the last 1024-channel feature map,
    # ("class_layers.relu" on a bare DenseNet121, which sits under `net` here)
    gradcam_layer = "net.class_layers.relu"

    def __init__(
        self,
        n_findings: int = 14,  # NIH ChestX-ray14's 14 findings (sources.FINDINGS)
        in_channels: int = 1,  # grey-scale films; an RGB checkpoint's stem is summed down to 1 channel
        pretrained_path: str | Path | None = None,  # None: random init (MONAI's Kaiming); never downloaded
    ):
        super().__init__()
        _check_int("n_findings", n_findings)
        _check_int("in_channels", in_channels)
        _check_path("pretrained_path", pretrained_path)
        self.n_findings, self.in_channels = n_findings, in_channels
        self.net = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=n_findings)
        self.n_features = self.net.class_layers.out.in_features  # 1024
        if pretrained_path is not None:
            load_densenet_weights(self.net, pretrained_path)

    def forward_features(self, image: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled 1024-d image representation [B, 1024] (the input of the last linear layer)."""
        _check_image(image, self.in_channels, "DenseNet121Baseline")
        c = self.net.class_layers
        # the same modules DenseNet121.forward runs, called one by one so the pooled vector is reachable
        return c.flatten(c.pool(c.relu(self.net.features(image))))

    def forward(self, image: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        # tokens are accepted and ignored: both models share one call signature
        return self.net.class_layers.out(self.forward_features(image))


# -----------------------------------------------------------------------------
# 3. MultiModalMedicalNet


class MultiModalMedicalNet(nn.Module):
    """Image + prior-knowledge text classifier.

      image -> DenseNet121 features + ReLU [B, 1024, h, w]
            -> spatial attention gate: a 1x1 conv scores each position, softmax over the h*w
               positions, features scaled by the map (kept in `last_attention`)
            -> one d_model token per position + learned 2-D position embedding
      tokens -> embedding + position -> TransformerEncoder (padding masked)
      fusion: image tokens attend to the text tokens (residual + LayerNorm), attention pooling
              over image tokens, concatenated with the text [CLS] vector -> MLP -> logits

    A row whose tokens are all padding (no text) masks nothing: its image tokens then attend to
    the padding embeddings, a learned "no text" context, instead of to an empty set (NaN).

    Ablations (defaults: the network above, with an unchanged state_dict):
      gate="biological" | "matched"  components/gating.py on the ReLU'd feature map, before the
            spatial attention gate, laid out [B, time = 1, space = h*w positions, 1024 channels].
            The model reads one film per sample, so the temporal axis has length 1 and the temporal
            gate is one learned scalar per film (a function of its pooled features): a global gain.
      text=False  no text branch at all (no token embedding, text encoder, cross-attention or
            [CLS] read-out); tokens are accepted and ignored, the head reads the pooled image only
      spatial_attention=False  no softmax spatial attention gate (`spatial_attn`): every position
            keeps weight 1 and `last_attention` stays None. Attention pooling of the image tokens
            (`pool_score`, which the head needs to reduce h*w tokens to one vector) remains.
    """

    # the ReLU on the backbone's last feature map, before the gate (same layer as the baseline's)
    gradcam_layer = "features_relu"

    def __init__(
        self,
        n_findings: int = 14,  # NIH ChestX-ray14's 14 findings (sources.FINDINGS)
        *,
        vocab_size: int,  # the trained tokenizer's get_vocab_size(); id 0 is [PAD]
        in_channels: int = 1,  # grey-scale films
        d_model: int = 256,  # width of every token, image and text (small: the text is a few words)
        n_heads: int = 4,  # 64-d heads at d_model 256, as in BERT/ViT
        n_text_layers: int = 2,  # metadata / short indications need little depth
        max_len: int = 64,  # longest token sequence, [CLS] and [SEP] included (text.encode's max_len)
        dropout: float = 0.1,  # BERT's dropout, on embeddings, attention and the head
        image_backbone: str = "densenet121",  # only DenseNet121: the baseline's network, so weights transfer
        pretrained_path: str | Path | None = None,  # a local DenseNet-121 state_dict for the backbone
        gate: str = "none",  # "none": no BiologicalAttention; "biological" / "matched" for the ablation
        text: bool = True,  # True: the text branch is read (the model's point); False for the ablation
        spatial_attention: bool = True,  # True: the softmax spatial attention gate; False for the ablation
    ):
        super().__init__()
        for name, value in [
            ("n_findings", n_findings),
            ("in_channels", in_channels),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("n_text_layers", n_text_layers),
        ]:
            _check_int(name, value)
        _check_int("vocab_size", vocab_size, minimum=2)  # [PAD] and at least one real token
        _check_int("max_len", max_len, minimum=2)  # room for [CLS] and [SEP]
        _check_prob("dropout", dropout)
        _check_path("pretrained_path", pretrained_path)
        _check_bool("text", text)
        _check_bool("spatial_attention", spatial_attention)
        if gate not in GATES:
            raise ValueError(f"gate must be one of {list(GATES)}, got {gate!r}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if image_backbone != "densenet121":
            raise ValueError(f"unknown image_backbone {image_backbone!r}; valid: ['densenet121']")
        self.n_findings, self.in_channels, self.vocab_size = n_findings, in_channels, vocab_size
        self.d_model, self.max_len = d_model, max_len
        self.text = text

        # image branch: DenseNet121 without its classifier, so baseline / CheXNet weights load as is
        densenet = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=n_findings)
        if pretrained_path is not None:
            load_densenet_weights(densenet, pretrained_path, head=False)
        self.features = densenet.features
        n_feat = densenet.class_layers.out.in_features  # 1024
        # DenseNet's features end at a BatchNorm (norm5); its classifier applies this ReLU first.
        # Not in-place: GradCAM's backward hook sits on it.
        self.features_relu = nn.ReLU()
        # the ablations' modules exist only when on, so a default model's state_dict is unchanged
        self.gate = build_gate(gate, n_feat)  # BiologicalAttention (or its control) on the feature map
        if spatial_attention:
            self.spatial_attn = nn.Conv2d(n_feat, 1, kernel_size=1)  # one relevance score per position
        else:
            self.spatial_attn = None
        self.img_proj = nn.Linear(n_feat, d_model)  # one d_model token per position
        # factorised learned 2-D position embedding (DETR-style row + column tables): any grid <= 32x32
        self.row_embed = nn.Parameter(torch.randn(MAX_GRID, d_model) * 0.02)
        self.col_embed = nn.Parameter(torch.randn(MAX_GRID, d_model) * 0.02)
        self.img_norm = nn.LayerNorm(d_model)  # post-ReLU features are large and positive: rescale before mixing
        self.last_attention: torch.Tensor | None = None  # [B, h, w] gate of the last forward, for the app

        # text branch (built in the original order, so a default model's initialisation is unchanged;
        # with text=False it does not exist: no attribute, no weights)
        if text:
            self._build_text(vocab_size, d_model, n_heads, n_text_layers, max_len, dropout)
        self.pool_score = nn.Linear(d_model, 1)  # attention pooling: a learned relevance per image token
        self.head_hidden = nn.Sequential(  # [pooled image ; text CLS] (or the pooled image) -> penultimate
            nn.Linear((2 if text else 1) * d_model, d_model),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.head_out = nn.Linear(d_model, n_findings)

    def _build_text(
        self, vocab_size: int, d_model: int, n_heads: int, n_text_layers: int, max_len: int, dropout: float
    ):
        """The text encoder and the fusion that reads it."""
        # padding_idx keeps [PAD]'s embedding at zero and out of the gradient
        self.tok_embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.pos_embed = nn.Parameter(torch.randn(max_len, d_model) * 0.02)  # learned, BERT-style
        self.text_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model,  # 4x expansion, as in BERT
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-LN: stable from scratch without learning-rate warm-up
        )
        # enable_nested_tensor=False: the nested-tensor fast path does not apply with norm_first
        self.text_encoder = nn.TransformerEncoder(
            layer, n_text_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )

        # fusion: image tokens (queries) read the text (keys / values)
        self.cross_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.fusion_dropout = nn.Dropout(dropout)
        self.fusion_norm = nn.LayerNorm(d_model)

    # -- branches, public so explain.py can run them separately (image once, text many times)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> image tokens [B, h*w, d_model]; stores the gate in `last_attention`."""
        _check_image(image, self.in_channels, "MultiModalMedicalNet")
        f = self.features_relu(self.features(image))  # [B, 1024, h, w]
        B, _, h, w = f.shape
        if h > MAX_GRID or w > MAX_GRID:
            raise ValueError(
                f"feature grid {h}x{w} exceeds {MAX_GRID}x{MAX_GRID}: "
                f"images up to {MAX_GRID * DENSENET_STRIDE} px per side"
            )
        if self.gate is not None:
            # [B, 1024, h, w] -> [B, time = 1 film, space = h*w positions, 1024 features] and back
            g = self.gate(f.flatten(2).transpose(1, 2).unsqueeze(1))
            f = g.squeeze(1).transpose(1, 2).reshape(f.shape)
        if self.spatial_attn is not None:
            attn = torch.softmax(self.spatial_attn(f).flatten(1), dim=1)  # [B, h*w], sums to 1 per image
            self.last_attention = attn.detach().view(B, h, w)
            # scaled by h*w so a uniform map is the identity: the gate re-weights, it does not shrink
            f = f * (attn * (h * w)).view(B, 1, h, w)
        x = self.img_proj(f.flatten(2).transpose(1, 2))  # [B, h*w, d_model]
        pos = (self.row_embed[:h, None, :] + self.col_embed[None, :w, :]).reshape(h * w, -1)
        return self.img_norm(x + pos)

    def encode_text(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T] ids -> (text tokens [B, T, d_model], key padding mask [B, T], True = ignore)."""
        if not self.text:
            raise ValueError("this MultiModalMedicalNet was built with text=False: it has no text branch")
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be integer ids of shape [batch, T], got {tokens.dtype} {list(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.max_len:
            raise ValueError(f"{T} tokens exceed max_len {self.max_len}: encode with max_len={self.max_len}")
        pad = tokens == 0
        # no text at all: mask nothing (softmax over an all-masked row is NaN); attending to the
        # padding embeddings is then a learned "nothing known" context
        pad = pad & ~pad.all(dim=1, keepdim=True)
        x = self.text_dropout(self.tok_embed(tokens) + self.pos_embed[:T])
        return self.text_encoder(x, src_key_padding_mask=pad), pad

    def fuse(self, img: torch.Tensor, text: torch.Tensor | None, pad: torch.Tensor | None) -> torch.Tensor:
        """Image tokens, text tokens, padding mask -> the penultimate representation [B, d_model].

        With text=False, `text` and `pad` are None: no cross-attention, the head reads the pooled image."""
        if self.text:
            attended, _ = self.cross_attn(img, text, text, key_padding_mask=pad, need_weights=False)
            img = self.fusion_norm(img + self.fusion_dropout(attended))  # residual: the image stays the base
        weights = torch.softmax(self.pool_score(img).squeeze(-1), dim=1)  # [B, h*w]
        pooled = (weights.unsqueeze(-1) * img).sum(dim=1)
        if not self.text:
            return self.head_hidden(pooled)
        # text[:, 0] is the [CLS] position: the encoder's summary of the text
        return self.head_hidden(torch.cat([pooled, text[:, 0]], dim=1))

    def forward_features(self, image: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        if tokens is None:  # no text: one padding token, the all-padding path
            tokens = torch.zeros(image.shape[0], 1, dtype=torch.long, device=image.device)
        if tokens.shape[0] != image.shape[0]:
            raise ValueError(f"image batch {image.shape[0]} and tokens batch {tokens.shape[0]} differ")
        text, pad = self.encode_text(tokens) if self.text else (None, None)  # text=False: tokens ignored
        return self.fuse(self.encode_image(image), text, pad)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        return self.head_out(self.forward_features(image, tokens))


# -----------------------------------------------------------------------------
# 4. factory

_MODELS: dict[str, type[nn.Module]] = {
    "densenet121": DenseNet121Baseline,
    "multimodal": MultiModalMedicalNet,
}

# Hyper-parameters each model accepts besides (n_findings, vocab_size). The YAML config has one
# section shared by all models; the caller picks the keys listed here.
MODEL_HPARAMS: dict[str, tuple[str, ...]] = {
    "densenet121": ("in_channels", "pretrained_path"),
    "multimodal": (
        "in_channels",
        "d_model",
        "n_heads",
        "n_text_layers",
        "max_len",
        "dropout",
        "image_backbone",
        "pretrained_path",
        "gate",
        "text",
        "spatial_attention",
    ),
}


def build_model(name: str, n_findings: int, vocab_size: int | None = None, **hparams) -> nn.Module:
    """Build a classifier by name. Unknown names and hyper-parameters raise ValueError.

    The DenseNet baseline has no text branch and ignores `vocab_size`; the multimodal model needs it.
    """
    cls = model_class(_MODELS, MODEL_HPARAMS, name, hparams)
    if "vocab_size" in inspect.signature(cls).parameters:
        if vocab_size is None:
            raise ValueError(f"model {name!r} requires vocab_size (the tokenizer's get_vocab_size())")
        return cls(n_findings, vocab_size=vocab_size, **hparams)
    return cls(n_findings, **hparams)


# -----------------------------------------------------------------------------
# 5. embeddings for drift monitoring


@torch.no_grad()
def embedding(model: nn.Module, image: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The penultimate representation [B, D] (D = 1024 baseline, d_model multimodal), in eval mode.

    Eval mode (restored afterwards): dropout would make a monitored embedding noisy, and batch
    statistics would make one image's embedding depend on its batch-mates.
    """
    net = model if hasattr(model, "forward_features") else getattr(model, "net", model)  # a MedicalClassifier too
    if not hasattr(net, "forward_features"):
        raise ValueError(f"{type(model).__name__} has no forward_features: not a medical model")
    was_training = net.training
    net.eval()
    try:
        return net.forward_features(image, tokens)
    finally:
        net.train(was_training)
