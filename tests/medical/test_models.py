"""Tests for pipelines/medical/{models,text,explain,module}.py: shapes and parameter count, padding
and masking, pretrained-weight loading, the masked loss, Grad-CAM that follows a bright disc,
overlay, text attributions, the WordPiece tokenizer and one Lightning fast_dev_run."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipelines.medical.evaluation.explain import gradcam, overlay, text_attributions
from pipelines.medical.models import (
    MODEL_HPARAMS,
    DenseNet121Baseline,
    MultiModalMedicalNet,
    build_model,
    embedding,
    load_densenet_weights,
)
from pipelines.medical.module import MedicalClassifier, masked_bce
from pipelines.medical.sources.nih import FINDINGS
from pipelines.medical.text import metadata_text

K = len(FINDINGS)
N = 64  # demo resolution: DenseNet121's feature grid is 2x2
VOCAB = 40
# a small multimodal model: the DenseNet backbone is fixed, the text / fusion side is shrunk
SMALL_MM = dict(d_model=32, n_heads=4, n_text_layers=1, max_len=16, dropout=0.1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # on 2 shared cores, two intra-op threads spin at every barrier while the other core is
    # busy: DenseNet's ~400 ops then run 20-70x slower than on one thread
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def disc(cy: int | None, cx: int | None, gen: torch.Generator, n: int = N, r: int = 8) -> torch.Tensor:
    """A [1, n, n] noisy grey film, with a bright disc centred at (cy, cx) unless cy is None."""
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    img = 0.3 + 0.1 * torch.rand(n, n, generator=gen)
    if cy is not None:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    return img[None]


@pytest.fixture(scope="module")
def baseline() -> DenseNet121Baseline:
    torch.manual_seed(0)
    return build_model("densenet121", K).eval()


@pytest.fixture(scope="module")
def multimodal() -> MultiModalMedicalNet:
    torch.manual_seed(0)
    return build_model("multimodal", K, VOCAB, **SMALL_MM).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.stack([disc(16, 16, g), disc(48, 48, g)])  # [2, 1, 64, 64]


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    # [CLS] a b c [SEP] pad...  and  [CLS] d [SEP] pad...
    return torch.tensor([[2, 5, 6, 7, 3, 0, 0, 0], [2, 9, 3, 0, 0, 0, 0, 0]])


# ----------------------------------------------------------------------------- shapes, sizes


def test_output_shapes_and_embeddings(baseline, multimodal, images, tokens):
    with torch.no_grad():
        assert baseline(images).shape == (2, K)
        out = multimodal(images, tokens)
    assert out.shape == (2, K) and torch.isfinite(out).all()
    # the spatial gate: one softmax over the 2x2 grid per image, kept for the app
    att = multimodal.last_attention
    assert att.shape == (2, 2, 2)
    torch.testing.assert_close(att.sum(dim=(1, 2)), torch.ones(2))
    # embedding() is exactly what the last linear layer reads
    e_base, e_mm = embedding(baseline, images), embedding(multimodal, images, tokens)
    assert e_base.shape == (2, 1024) and e_mm.shape == (2, SMALL_MM["d_model"])
    torch.testing.assert_close(baseline.net.class_layers.out(e_base), baseline(images))
    torch.testing.assert_close(multimodal.head_out(e_mm), out)


def test_baseline_full_resolution_and_parameter_count(baseline):
    # MONAI DenseNet121, 1 input channel, 14 outputs: CheXNet's network, ~6.96M parameters
    n_params = sum(p.numel() for p in baseline.parameters())
    assert n_params == 6_961_934
    with torch.no_grad():
        out = baseline(torch.rand(1, 1, 224, 224))
    assert out.shape == (1, K)


def test_bad_inputs_and_factory_refusals(baseline, multimodal, images):
    with pytest.raises(ValueError, match=r"\[batch, 1, H, W\]"):
        baseline(images[:, 0])  # channel axis dropped
    with pytest.raises(ValueError, match="max_len"):
        multimodal(images, torch.ones(2, SMALL_MM["max_len"] + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        build_model("resnet50", K)
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['d_model'\]"):
        build_model("densenet121", K, d_model=32)
    with pytest.raises(ValueError, match="requires vocab_size"):
        build_model("multimodal", K)
    with pytest.raises(ValueError, match="divisible"):
        build_model("multimodal", K, VOCAB, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="image_backbone"):
        build_model("multimodal", K, VOCAB, image_backbone="vit")
    assert set(MODEL_HPARAMS) == {"densenet121", "multimodal"}


# ----------------------------------------------------------------------------- padding / masking


def test_all_padding_tokens_give_finite_outputs(multimodal, images):
    mm = copy.deepcopy(multimodal)
    no_text = torch.zeros(2, 6, dtype=torch.long)
    mixed = torch.tensor([[2, 5, 3, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # one row with text, one without
    for mode in (True, False):  # train (dropout, grads) and eval (PyTorch's fast paths)
        mm.train(mode)
        for toks in (no_text, mixed, None):
            out = mm(images, toks)
            assert torch.isfinite(out).all(), (mode, toks)
    mm.train()
    mm(images, no_text).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in mm.parameters() if p.grad is not None)


def test_padding_is_masked_everywhere(multimodal, images, tokens):
    # extra padding must not change anything: it is masked in self- and cross-attention
    with torch.no_grad():
        img = multimodal.encode_image(images)
        short = multimodal.head_out(multimodal.fuse(img, *multimodal.encode_text(tokens[:, :5])))
        long = multimodal.head_out(multimodal.fuse(img, *multimodal.encode_text(tokens)))
        other = tokens.clone()
        other[0, 1] = 8  # a real token does matter
        changed = multimodal.head_out(multimodal.fuse(img, *multimodal.encode_text(other)))
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed[0], long[0], atol=1e-5)
    torch.testing.assert_close(changed[1], long[1], atol=1e-5, rtol=1e-5)  # rows are independent


# ----------------------------------------------------------------------------- masked loss


def test_masked_bce_matches_manual_bce_on_unmasked_entries():
    torch.manual_seed(0)
    logits = torch.randn(4, K, requires_grad=True)
    labels = torch.randint(0, 2, (4, K)).float()
    labels[0, :3] = math.nan
    labels[2] = math.nan  # a fully masked row
    known = ~torch.isnan(labels)
    manual = F.binary_cross_entropy_with_logits(logits[known], labels[known])
    loss = masked_bce(logits, labels)
    torch.testing.assert_close(loss, manual)
    # every entry is known: plain BCE
    full = torch.randint(0, 2, (4, K)).float()
    torch.testing.assert_close(masked_bce(logits, full), F.binary_cross_entropy_with_logits(logits, full))
    # a masked label is invisible, whatever value stands in its place
    flipped = torch.where(known, labels, 1.0)
    assert masked_bce(logits, flipped.masked_fill(~known, math.nan)) == loss
    other = labels.clone()
    other[1, 5] = 1.0 - other[1, 5]  # an unmasked label does count
    assert masked_bce(logits, other) != loss
    loss.backward()
    assert (logits.grad[2] == 0).all() and (logits.grad[0, :3] == 0).all()
    assert (logits.grad[known] != 0).all()


def test_masked_bce_fully_masked_is_zero_with_grad():
    logits = torch.randn(2, K, requires_grad=True)
    loss = masked_bce(logits, torch.full((2, K), math.nan))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (logits.grad == 0).all()


def test_pos_weight_scales_positive_terms_only():
    torch.manual_seed(0)
    logits = torch.randn(3, K)
    ones, zeros = torch.ones(3, K), torch.zeros(3, K)
    pw = torch.full((K,), 3.0)
    torch.testing.assert_close(masked_bce(logits, ones, pw), 3 * masked_bce(logits, ones))
    torch.testing.assert_close(masked_bce(logits, zeros, pw), masked_bce(logits, zeros))
    # per finding: weighting finding 0 changes only finding 0's share of the mean
    pw0 = torch.ones(K)
    pw0[0] = 5.0
    diff = masked_bce(logits, ones, pw0) - masked_bce(logits, ones)
    expected = 4 * F.binary_cross_entropy_with_logits(logits[:, 0], ones[:, 0], reduction="sum") / ones.numel()
    torch.testing.assert_close(diff, expected)


# ----------------------------------------------------------------------------- pretrained weights


def test_pretrained_path_restores_weights(tmp_path, baseline):
    path = tmp_path / "densenet.pt"
    torch.save(baseline.state_dict(), path)
    torch.manual_seed(123)
    restored = DenseNet121Baseline(K, pretrained_path=str(path))
    for (k, a), b in zip(baseline.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), k
    # the multimodal backbone takes the same file (its head is not DenseNet's)
    mm = build_model("multimodal", K, VOCAB, pretrained_path=path, **SMALL_MM)
    torch.testing.assert_close(mm.features.conv0.weight, baseline.net.features.conv0.weight)
    torch.testing.assert_close(mm.features.norm5.running_var, baseline.net.features.norm5.running_var)


def test_pretrained_torchvision_naming_and_rgb_stem(tmp_path):
    # a torchvision-style DenseNet-121 (RGB stem, `denselayerN.norm1`, `classifier`), as CheXNet
    # checkpoints come: keys renamed, the stem summed to one channel, the 1000-way head skipped
    torch.manual_seed(1)
    rgb = build_model("densenet121", 1000, in_channels=3).net
    tv = {
        k.replace(".layers.", ".").replace("class_layers.out.", "classifier."): v for k, v in rgb.state_dict().items()
    }
    path = tmp_path / "tv.pth"
    torch.save({"state_dict": {f"module.densenet121.{k}": v for k, v in tv.items()}}, path)
    grey = build_model("densenet121", K).net
    report = load_densenet_weights(grey, path)
    torch.testing.assert_close(grey.features.conv0.weight, rgb.features.conv0.weight.sum(1, keepdim=True))
    torch.testing.assert_close(
        grey.features.denseblock4.denselayer16.layers.conv2.weight,
        rgb.features.denseblock4.denselayer16.layers.conv2.weight,
    )
    assert report["missing"] == ["class_layers.out.bias", "class_layers.out.weight"]
    assert len(report["skipped"]) == 2 and report["adapted"] and not report["unexpected"]


def test_pretrained_path_errors_name_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "chexnet.pth"
    with pytest.raises(FileNotFoundError, match="chexnet.pth"):
        DenseNet121Baseline(K, pretrained_path=missing)
    junk = tmp_path / "junk.pt"
    torch.save({"something": torch.zeros(3)}, junk)
    with pytest.raises(ValueError, match="junk.pt.*none of its 1 tensors"):
        DenseNet121Baseline(K, pretrained_path=junk)


# ----------------------------------------------------------------------------- Grad-CAM, overlay


def _quadrant(cam: np.ndarray) -> tuple[bool, bool]:
    r, c = np.unravel_index(cam.argmax(), cam.shape)
    return bool(r < cam.shape[0] / 2), bool(c < cam.shape[1] / 2)


def test_gradcam_follows_a_bright_disc(baseline):
    # toy task "a disc is present": a linear probe fitted in closed form (difference of the class
    # means of the pooled features) becomes finding 0's classifier row; its Grad-CAM must then
    # peak in the quadrant holding the disc, wherever the disc is moved
    g = torch.Generator().manual_seed(0)
    model = copy.deepcopy(baseline)
    pos = [
        disc(int(torch.randint(10, 54, (), generator=g)), int(torch.randint(10, 54, (), generator=g)), g)
        for _ in range(6)
    ]
    neg = [disc(None, None, g) for _ in range(6)]
    with torch.no_grad():
        f = model.forward_features(torch.stack(pos + neg))
        model.net.class_layers.out.weight[0] = f[:6].mean(0) - f[6:].mean(0)
        model.net.class_layers.out.bias[0] = 0.0
    centres = [(16, 16), (48, 48), (16, 48), (48, 16)]
    cams = gradcam(model, torch.stack([disc(cy, cx, g) for cy, cx in centres]), None, 0)
    assert cams.shape == (4, N, N) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    for cam, (cy, cx) in zip(cams, centres):
        assert _quadrant(cam) == (cy < N / 2, cx < N / 2), (cy, cx)
    # the caller's model is left untouched: no hooks, ReLU still in place
    assert not model.net.class_layers.relu._forward_hooks
    assert model.net.class_layers.relu.inplace


def _reference_cams(model, images, tokens) -> torch.Tensor:
    """Grad-CAM written out (Selvaraju et al. 2017) for every finding: raw maps [K, B, h, w]."""
    acts = []
    layer = dict(model.named_modules())[model.gradcam_layer]
    handle = layer.register_forward_hook(lambda mod, inp, out: acts.append(out))
    try:
        logits = model(images, tokens)
    finally:
        handle.remove()
    a = acts[0]
    maps = []
    for k in range(logits.shape[1]):  # backward through the head only: cheap
        (grad,) = torch.autograd.grad(logits[:, k].sum(), a, retain_graph=True)
        maps.append(F.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1)))
    return torch.stack(maps).detach()


@pytest.mark.parametrize("name", ["densenet121", "multimodal"])
def test_gradcam_matches_a_written_out_reference(name, baseline, multimodal, images, tokens):
    model, toks = (baseline, None) if name == "densenet121" else (multimodal, tokens)
    raw = _reference_cams(model, images, toks)
    # a finding with evidence in both films (Grad-CAM's ReLU leaves a flat 0 map otherwise)
    k = next(k for k in range(K) if (raw[k].flatten(1).amax(1) > raw[k].flatten(1).amin(1)).all())
    cams = gradcam(model, images, toks, finding_index=k)
    assert cams.shape == (2, N, N) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0
    up = F.interpolate(raw[k][:, None], size=(N, N), mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.flatten(1).amin(1)[:, None, None], up.flatten(1).amax(1)[:, None, None]
    np.testing.assert_allclose(cams, ((up - lo) / (hi - lo)).numpy(), atol=1e-4)
    assert cams.reshape(2, -1).max(1).tolist() == [1.0, 1.0]  # scaled per film, not flipped
    assert not np.allclose(cams[0], cams[1])  # two films, two maps
    with pytest.raises(ValueError, match="finding_index"):
        gradcam(model, images, toks, K)


def test_overlay_shapes_and_dtype():
    cam = np.linspace(0, 1, N * N).reshape(N, N)
    for img in (np.full((N, N), 128, np.uint8), np.full((N, N), 0.5, np.float32), torch.rand(1, N, N)):
        out = overlay(img, cam)
        assert out.shape == (N, N, 3) and out.dtype == np.uint8
    grey = overlay(np.full((N, N), 0.5), cam, alpha=0.0)
    assert (grey == 128).all()  # alpha 0: the film alone, grey on all three channels
    hot = overlay(np.zeros((N, N)), np.ones((N, N)), alpha=1.0)
    assert (hot[..., 0] > hot[..., 2]).all()  # jet's top is red
    with pytest.raises(ValueError, match="differ in shape"):
        overlay(np.zeros((N, N)), np.zeros((N // 2, N // 2)))


# ----------------------------------------------------------------------------- text


def test_text_attributions_one_score_per_real_token(multimodal, baseline, images, tokens):
    scores = text_attributions(multimodal, images[:1], tokens[:1], finding_index=0, n_steps=8)
    assert [t for t, _ in scores] == ["2", "5", "6", "7", "3"]
    assert all(math.isfinite(s) for _, s in scores)
    assert any(s != 0.0 for _, s in scores)
    assert multimodal.training is False  # mode restored
    with pytest.raises(ValueError, match="no text branch"):
        text_attributions(baseline, images[:1], tokens[:1], finding_index=0)
    with pytest.raises(ValueError, match="one example"):
        text_attributions(multimodal, images, tokens, finding_index=0)


def test_metadata_text():
    assert metadata_text(58, "F", "PA") == "age_55 sex_f view_pa"
    assert metadata_text(3, "m", "AP AXIAL") == "age_0 sex_m view_ap_axial"
    assert metadata_text(97.0, "M", "AP") == "age_95 sex_m view_ap"
    assert metadata_text("058Y", "F", "lateral") == "age_55 sex_f view_lateral"  # DICOM's PatientAge
    assert metadata_text(0, "M", "PA") == "age_0 sex_m view_pa"
    assert metadata_text(120, "F", "AP") == "age_120 sex_f view_ap"
    # missing values are allowed: a request may leave any field out
    assert metadata_text(None, float("nan"), "") == "age_unknown sex_unknown view_unknown"
    assert metadata_text(pd.NA, None, np.nan) == "age_unknown sex_unknown view_unknown"
    # present but wrong: a clear error naming the field and the value, never a silent token
    for age, sex, view, match in (
        (414, "F", "PA", r"age must be between 0 and 120 years \(or missing\), got 414"),  # NIH's 2017 typos
        (-1, "F", "PA", "age must be between 0 and 120"),
        (float("inf"), "F", "PA", "age must be between 0 and 120"),
        ("forty", "F", "PA", "age must be a number of years, got 'forty'"),
        (True, "F", "PA", "age must be a number"),
        (40, "X", "PA", "sex must be one of M, F .*got 'X'"),
        (40, "F", "sideways", "view must be one of PA, AP, .*got 'sideways'"),
    ):
        with pytest.raises(ValueError, match=match):
            metadata_text(age, sex, view)


def test_wordpiece_tokenizer_trains_encodes_and_round_trips(tmp_path, images):
    from pipelines.medical.text import encode, load_tokenizer, train_tokenizer

    train = [
        metadata_text(a, s, v)
        for a, s, v in [(58, "F", "PA"), (33, "M", "AP"), (None, "F", "PA"), (71, "M", "PA"), (58, "M", "AP")]
    ]
    tok = train_tokenizer(train, vocab_size=200, out_path=tmp_path / "tok" / "tokenizer.json")
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    ids = encode(tok, ["age_55 sex_f view_pa", "age_70 sex_m"], max_len=8)
    assert ids.dtype == torch.long and ids.shape == (2, 8)
    assert (ids[:, 0] == 2).all()
    assert tok.id_to_token(int(ids[0, 1])) == "age_55"  # one fact, one token
    assert (ids[0, 4:] == 0).all() and (ids[1, 3:] == 0).all() and (ids[1, :3] != 0).all()
    assert ids[0, :4].tolist() == tok.encode("age_55 sex_f view_pa").ids  # the post-processor agrees
    cut = encode(tok, ["age_55 sex_f view_pa"], max_len=2)
    assert cut.tolist() == [ids[0, :2].tolist()]  # truncated, [CLS] kept first
    loaded = load_tokenizer(tmp_path / "tok" / "tokenizer.json")
    assert torch.equal(encode(loaded, ["age_55 sex_f view_pa", "age_70 sex_m"], 8), ids)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    # end to end: tokenizer -> model sized by get_vocab_size() -> attributions named by token
    torch.manual_seed(0)
    model = build_model("multimodal", K, tok.get_vocab_size(), **SMALL_MM).eval()
    ids = encode(tok, ["age_55 sex_f view_pa"], max_len=SMALL_MM["max_len"])
    names = [t for t, _ in text_attributions(model, images[:1], ids, 0, tokenizer=tok, n_steps=4)]
    assert names == ["[CLS]", "age_55", "sex_f", "view_pa"]


# ----------------------------------------------------------------------------- Lightning


def test_lightning_fast_dev_run_logs_losses():
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(0)

    def batch(i):
        labels = torch.randint(0, 2, (K,), generator=g).float()
        labels[-1] = math.nan  # a masked finding
        return {
            "image": torch.rand(1, N, N, generator=g),
            "tokens": torch.tensor([2, 5 + i % 3, 3, 0]),
            "labels": labels,
            "meta": {"image": f"{i:08d}_000.png"},
        }

    def collate(items):
        out = {k: torch.stack([it[k] for it in items]) for k in ("image", "tokens", "labels")}
        out["meta"] = [it["meta"] for it in items]
        return out

    loader = DataLoader([batch(i) for i in range(4)], batch_size=4, collate_fn=collate)
    module = MedicalClassifier("multimodal", SMALL_MM, vocab_size=VOCAB, pos_weight=[2.0] * K)
    trainer = pl.Trainer(
        fast_dev_run=True, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, logger=False
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    metrics = trainer.callback_metrics
    assert math.isfinite(metrics["train/loss"].item())
    assert math.isfinite(metrics["val/loss"].item())
    assert "val/auroc" in metrics
    assert module.hparams.model == "multimodal" and module.pos_weight.shape == (K,)
