"""Explanations for the medical models: Grad-CAM heat maps, their overlay on the film, and
per-token attributions of the text input.

- gradcam:           MONAI's GradCAM (Selvaraju et al. 2017) on the model's `gradcam_layer`, the
                     last feature map, upsampled to the input and scaled to [0, 1] per image.
- overlay:           a heat map blended over the grey film as RGB uint8 (matplotlib's jet; no cv2).
- text_attributions: captum's LayerIntegratedGradients (Sundararajan et al. 2017) on the token
                     embedding, from an all-padding baseline ("nothing known").

The model passed in is never modified: Grad-CAM runs on a copy (MONAI's hooks cannot be removed
and it turns the hooked ReLU's in-place flag off), and train/eval mode is restored.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
from matplotlib import colormaps

__all__ = ["gradcam", "overlay", "text_attributions"]


def _unwrap(model: nn.Module) -> nn.Module:
    # a MedicalClassifier (LightningModule) holds the network as `.net`; the baseline holds its
    # DenseNet as `.net` too, so unwrap only when the outer module is not itself a medical model
    if hasattr(model, "gradcam_layer"):
        return model
    inner = getattr(model, "net", None)
    if inner is None or not hasattr(inner, "gradcam_layer"):
        raise ValueError(f"{type(model).__name__} is not a medical model (no gradcam_layer)")
    return inner


def _check_finding(net: nn.Module, finding_index: int) -> None:
    n = net.n_findings
    if isinstance(finding_index, bool) or not isinstance(finding_index, int) or not 0 <= finding_index < n:
        raise ValueError(f"finding_index must be an int in [0, {n}), got {finding_index!r}")


def _scale01(cam: torch.Tensor) -> torch.Tensor:
    """Min-max per image to [0, 1]; a flat map (nothing supports the finding) becomes all 0.

    Not MONAI's default_normalizer: that one maps (min, max) to (1, 0), flipping the map.
    """
    flat = cam.flatten(1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.view_as(cam)


def gradcam(model: nn.Module, image: torch.Tensor, tokens: torch.Tensor | None, finding_index: int) -> np.ndarray:
    """Grad-CAM of one finding for each image: float32 [B, H, W] in [0, 1] at the input's size."""
    from monai.visualize import GradCAM

    net = _unwrap(model)
    _check_finding(net, finding_index)
    # a private copy: MONAI registers hooks it never removes and edits the hooked layer
    net = copy.deepcopy(net).eval()
    # the input requires grad so the backward pass reaches the hooked layer even if every
    # parameter is frozen
    x = image.detach().clone().requires_grad_(True)
    cam = GradCAM(nn_module=net, target_layers=net.gradcam_layer, postprocessing=_scale01)
    # GradCAM forwards keyword arguments to the module: the tokens ride along with the image
    kwargs = {} if tokens is None else {"tokens": tokens}
    maps = cam(x, class_idx=finding_index, **kwargs)  # [B, 1, H, W]
    return maps[:, 0].detach().cpu().numpy().astype(np.float32)


def _as_2d(a, name: str) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    while arr.ndim > 2 and arr.shape[0] == 1:  # [1, H, W] (a channel axis) is still one film
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [H, W], got shape {arr.shape}")
    return arr


def overlay(image, cam, alpha: float = 0.4) -> np.ndarray:
    """The heat map `cam` (values in [0, 1]) over the grey film: uint8 RGB [H, W, 3].

    `image` is uint8 (0-255) or float in [0, 1] (the data module's scale); a float image outside
    [0, 1] is min-max scaled for display.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    img, heat = _as_2d(image, "image"), _as_2d(cam, "cam").astype(np.float64)
    if img.shape != heat.shape:
        raise ValueError(
            f"image {img.shape} and cam {heat.shape} differ in shape: gradcam already upsamples to the input size"
        )
    if not np.isfinite(heat).all():
        raise ValueError("cam has non-finite values")
    if img.dtype == np.uint8:
        grey = img / 255.0
    else:
        grey = img.astype(np.float64)
        lo, hi = float(np.nanmin(grey)), float(np.nanmax(grey))
        if lo < 0.0 or hi > 1.0:
            grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    colours = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3]  # RGBA -> RGB, floats in [0, 1]
    rgb = (1.0 - alpha) * grey[..., None] + alpha * colours
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def text_attributions(
    model: nn.Module, image: torch.Tensor, tokens: torch.Tensor, finding_index: int, tokenizer=None, n_steps: int = 50
) -> list[tuple[str, float]]:
    """Integrated-gradients score of each non-padding token for one film's finding logit.

    One example: image [1, C, H, W] (or [C, H, W]) and tokens [1, T] (or [T]). Returns
    (token, score) in sequence order, [CLS] and [SEP] included; the token is its string when a
    tokenizer is given, else its id as a string. Positive scores push the finding's logit up;
    the scores sum to about logit(tokens) - logit(all padding) (IG's completeness).
    """
    from captum.attr import LayerIntegratedGradients

    net = _unwrap(model)
    if not hasattr(net, "tok_embed"):
        raise ValueError(f"{type(net).__name__} has no text branch: text attributions need the multimodal model")
    _check_finding(net, finding_index)
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if tokens.ndim == 1:
        tokens = tokens.unsqueeze(0)
    if image.shape[0] != 1 or tokens.shape[0] != 1:
        raise ValueError(
            f"text_attributions explains one example; got image batch {image.shape[0]}, tokens batch {tokens.shape[0]}"
        )
    was_training = net.training
    net.eval()  # dropout off: attributions of a deterministic function
    try:
        with torch.no_grad():
            img = net.encode_image(image)  # the film is fixed: encode it once, not n_steps times

        def logit(ids: torch.Tensor) -> torch.Tensor:
            # captum swaps the embedding output for its interpolations; the mask still comes from
            # the real ids, so padding stays masked along the whole path
            text, pad = net.encode_text(ids)
            return net.head_out(net.fuse(img.expand(len(ids), -1, -1), text, pad))[:, finding_index]

        lig = LayerIntegratedGradients(logit, net.tok_embed)
        # baseline: all padding (zero embeddings, padding_idx), i.e. "nothing known"
        attr = lig.attribute(tokens, baselines=torch.zeros_like(tokens), n_steps=n_steps)
    finally:
        net.train(was_training)
    scores = attr.sum(dim=-1)[0].detach().cpu()  # [T]: summed over the embedding dimensions
    ids = tokens[0].tolist()
    return [
        ((tokenizer.id_to_token(i) if tokenizer is not None else str(i)), float(scores[t]))
        for t, i in enumerate(ids)
        if i != 0
    ]
