"""pipelines/art/quality.py: FID/KID, precision/recall, memorisation, the trained encoder and Inception loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from pipelines.art import quality as q


def synthetic(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: dark images with bright green blobs (fluorescence). Class 1: pink textured tissue (histology)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for i in range(n):
        label = i % 2
        if label == 0:
            img = np.full((3, size, size), -0.9)
            for _ in range(rng.integers(2, 5)):
                cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.15)
                img[1] += 1.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        else:
            texture = np.sin(2 * np.pi * rng.uniform(3, 6) * (xx + rng.uniform(0, 1) * yy)) * 0.2
            img = np.stack([0.7 + texture, -0.2 + texture, 0.5 + texture])
        images.append(img + rng.normal(0, 0.05, img.shape))
        labels.append(label)
    return torch.tensor(np.stack(images), dtype=torch.float32).clamp(-1, 1), torch.tensor(labels)


@pytest.fixture(scope="module")
def encoder():
    images, labels = synthetic(48)
    model, info = q.train_encoder(images, labels, size=16, epochs=4, batch_size=16, seed=3)
    return model, info, images, labels


def test_fid_kid_zero_on_itself_and_monotone_in_shift():
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(200, 16, generator=g, dtype=torch.float64),
        torch.randn(200, 16, generator=g, dtype=torch.float64),
    )
    same, independent = q.fid_kid(x, x), q.fid_kid(x, y)
    scores = [q.fid_kid(x, x + shift) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert abs(same["fid"]) < 1e-3 * scores[0]["fid"]
    # KID is unbiased for INDEPENDENT sets (~0 for the same distribution); a set against itself pairs every point
    # with itself in the cross term, so it comes out slightly negative rather than 0
    assert abs(independent["kid"]) < 0.2 * scores[0]["kid"] and same["kid"] <= 0
    fids, kids = [s["fid"] for s in scores], [s["kid"] for s in scores]
    assert fids == sorted(fids) and kids == sorted(kids) and fids[0] > 0 and kids[0] > 0
    assert fids[-1] == pytest.approx(16 * 2.0**2, rel=1e-6)  # a pure mean shift: |mu_r - mu_g|^2


def test_fid_matches_the_scipy_formula_and_kid_subset_is_clipped():
    g = torch.Generator().manual_seed(1)
    a, b = (
        torch.randn(60, 5, generator=g, dtype=torch.float64),
        torch.randn(40, 5, generator=g, dtype=torch.float64) * 1.5,
    )
    mu_a, mu_b, s_a, s_b = a.mean(0).numpy(), b.mean(0).numpy(), np.cov(a.T.numpy()), np.cov(b.T.numpy())
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    out = q.fid_kid(a, b, subset_size=1000)
    assert out["fid"] == pytest.approx(expected, rel=1e-6)
    assert out["kid_subset_size"] == 40 and out["kid"] > 0
    assert q.fid_kid(a, b, subset_size=20, seed=5) == q.fid_kid(a, b, subset_size=20, seed=5)  # seeded subsets


def test_precision_recall():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(100, 8, generator=g, dtype=torch.float64)
    same = q.precision_recall(real, real.clone())
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    collapsed = q.precision_recall(real, real[:1].repeat(50, 1))
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.05
    assert q.precision_recall(real, real + 100.0)["precision"] == 0.0


def test_memorisation():
    g = torch.Generator().manual_seed(3)
    train, heldout = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g)
    copies = train[:60] + 1e-6 * torch.randn(60, 8, generator=g)
    out = q.memorisation(copies, train, heldout)
    assert out["ratio_median"] < 1e-3 and out["share_below_0.5"] == 1.0
    assert len(out["closest"]) == 8 and all(fi == ti for fi, ti, _ in out["closest"]) and len(out["ratios"]) == 60
    honest = q.memorisation(torch.randn(200, 8, generator=g), train, heldout)
    assert 0.8 < honest["ratio_median"] < 1.25  # same-size train and held-out sets: ~1 (sampling spread ~+-10 %)


def test_train_encoder_is_deterministic_accurate_and_recognises(encoder):
    model, info, images, labels = encoder
    again, _ = q.train_encoder(images, labels, size=16, epochs=4, batch_size=16, seed=3)
    f1, f2 = q.extract_features(model, images), q.extract_features(again, images)
    assert f1.dtype == torch.float64 and f1.shape == (48, model.num_features) and torch.equal(f1, f2)
    assert info["train_accuracy"] > 0.9 and info["epochs"] == 4 and info["seconds"] > 0
    fresh, fresh_labels = synthetic(40, seed=9)  # unseen images of the same two kinds
    assert q.recognition(model, fresh, fresh_labels) > 0.9
    assert q.recognition(model, fresh, 1 - fresh_labels) < 0.1
    uint8 = ((fresh + 1) * 127.5).round().to(torch.uint8)  # torchmetrics-style inputs are accepted too
    assert torch.allclose(q.extract_features(model, uint8), q.extract_features(model, fresh), atol=1e-2)


def test_reference_points_floor_below_ceiling(encoder):
    model, _, images, _ = encoder
    heldout, _ = synthetic(24, seed=7)
    ref = q.reference_points(model, images, heldout)
    assert set(ref) == {"floor/fid", "floor/kid", "ceiling/fid", "ceiling/kid"}
    assert ref["floor/fid"] < ref["ceiling/fid"] and ref["floor/kid"] < ref["ceiling/kid"]


class TinyDetector(torch.nn.Module):
    """Stands in for StyleGAN2-ADA's inception-2015-12-05.pt: uint8 (N, 3, H, W) -> pooled features."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.dtype == torch.uint8
        return self.proj(x.float().mean(dim=(2, 3)) / 255.0)


def test_load_inception(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.save(torch.jit.script(TinyDetector()), str(path))
    net = q.load_inception(str(path))
    assert net.num_features == 5
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    reference = torch.jit.load(str(path))(((images + 1) * 127.5).round().to(torch.uint8), return_features=True)
    assert torch.allclose(q.extract_features(net, images).float(), reference, atol=1e-6)
    assert q.fid_kid(q.extract_features(net, images), q.extract_features(net, images * 0.5))["fid"] >= 0
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        q.load_inception(str(missing))
