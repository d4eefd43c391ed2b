"""Tests for the from-scratch StyleGAN2 (pipelines/art/stylegan.py), at tiny sizes so they run in seconds on CPU."""

from __future__ import annotations

import pytest
import torch

from pipelines.art.stylegan import (
    Discriminator,
    Generator,
    ModulatedConv2d,
    diff_augment,
    discriminator_loss,
    generator_loss,
    mixing_ws,
    r1_penalty,
)

SIZE, CH = 16, 16


def _models(seed: int = 0) -> tuple[Generator, Discriminator]:
    torch.manual_seed(seed)
    g = Generator(size=SIZE, n_classes=3, z_dim=16, w_dim=16, mapping_layers=2, channels=CH, max_channels=32)
    d = Discriminator(size=SIZE, n_classes=3, channels=CH, max_channels=32)
    return g, d


def _z(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_num_ws():
    g, d = _models()
    z, labels = _z(4, 1), torch.tensor([0, 1, 2, 0])
    img = g(z, labels)
    assert img.shape == (4, 3, SIZE, SIZE) and img.dtype == torch.float32
    assert d(img, labels).shape == (4,)
    w = g.mapping(z, labels)
    assert w.shape == (4, g.w_dim)
    assert g.num_ws == 2 * (4 - 1)  # log2(16) = 4 resolutions 4, 8, 16 -> 6 style inputs
    assert g.synthesis(w[:, None].expand(-1, g.num_ws, -1)).shape == img.shape
    with pytest.raises(ValueError):
        g.synthesis(w[:, None].expand(-1, g.num_ws - 1, -1))
    assert mixing_ws(g, z, labels, prob=1.0).shape == (4, g.num_ws, g.w_dim)


@pytest.mark.parametrize("size", [4, 12, 0])
def test_bad_size_raises(size):
    with pytest.raises(ValueError):
        Generator(size=size)
    with pytest.raises(ValueError):
        Discriminator(size=size)


def test_same_seed_const_noise_is_reproducible():
    g, _ = _models()
    g.eval()
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        a = g(_z(2, 7), labels, noise="const")
        b = g(_z(2, 7), labels, noise="const")
        c = g(_z(2, 8), labels, noise="const")
        g2, _ = _models()  # same init seed -> same weights and same const noise buffers
        g2.eval()
        a2 = g2(_z(2, 7), labels, noise="const")
    assert torch.equal(a, b) and torch.equal(a, a2)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError):
        g(_z(2, 7), labels, noise="bogus")


def test_noise_modes_differ_once_strength_is_nonzero():
    g, _ = _models()
    g.eval()
    for layer in g.convs:
        layer.noise_strength.data.fill_(0.5)
    z, labels = _z(2, 1), torch.tensor([0, 1])
    with torch.no_grad():
        const, none = g(z, labels, noise="const"), g(z, labels, noise="none")
        r1, r2 = g(z, labels, noise="random"), g(z, labels, noise="random")
    assert not torch.allclose(const, none) and not torch.allclose(r1, r2)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_demodulation_unit_norm_and_variance(scale):
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 12, 3, w_dim=16)
    w = torch.randn(4, 16) * scale
    weight = conv.modulated_weight(w)
    norms = weight.square().sum(dim=[2, 3, 4]).sqrt()
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    x = torch.randn(4, 8, 16, 16)
    out = conv(x, w)
    assert 0.2 < out[..., 2:-2, 2:-2].var().item() < 5.0  # O(1) whatever the style scale
    assert torch.allclose(out, conv(x, w, fused=False), atol=1e-4)  # grouped conv == modulate-activations path


def test_style_mix_endpoints():
    g, _ = _models()
    g.eval()
    za, zb, labels = _z(2, 1), _z(2, 2), torch.tensor([0, 2])
    with torch.no_grad():
        a, b = g(za, labels, noise="const"), g(zb, labels, noise="const")
        assert torch.allclose(g.style_mix(za, zb, labels, crossover=0), b, atol=1e-6)
        assert torch.allclose(g.style_mix(za, zb, labels, crossover=g.num_ws), a, atol=1e-6)
        mid = g.style_mix(za, zb, labels, crossover=g.num_ws // 2)
    assert not torch.allclose(mid, a) and not torch.allclose(mid, b)


def test_class_label_changes_outputs():
    g, d = _models()
    g.eval()
    z = _z(2, 3)
    with torch.no_grad():
        img0 = g(z, torch.tensor([0, 0]), noise="const")
        img1 = g(z, torch.tensor([1, 1]), noise="const")
        assert not torch.allclose(img0, img1)
        assert not torch.allclose(d(img0, torch.tensor([0, 0])), d(img0, torch.tensor([1, 1])))


def test_r1_penalty_positive_and_differentiable():
    _, d = _models()
    real = torch.rand(4, 3, SIZE, SIZE).mul(2).sub(1).requires_grad_(True)
    penalty = r1_penalty(d(real, torch.tensor([0, 1, 2, 0])), real)
    assert penalty.ndim == 0 and penalty.item() > 0
    penalty.backward()
    grads = [p.grad for p in d.parameters() if p.grad is not None]
    assert grads and any(gr.abs().sum() > 0 for gr in grads)


def test_diff_augment():
    torch.manual_seed(0)
    x = torch.rand(4, 3, SIZE, SIZE).mul(2).sub(1).requires_grad_(True)
    y = diff_augment(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert diff_augment(x, policy="") is x
    for op in ("color", "translation", "cutout"):
        assert diff_augment(x, policy=op).shape == x.shape
    with pytest.raises(ValueError):
        diff_augment(x, policy="flip")


def test_truncation_zero_gives_w_avg():
    g, _ = _models()
    g.train()
    g.mapping(_z(8, 1), torch.randint(0, 3, (8,)))  # training-mode call moves w_avg off zero
    assert g.w_avg.abs().sum() > 0
    g.eval()
    w_avg = g.w_avg.clone()
    w = g.mapping(_z(5, 2), torch.tensor([0, 1, 2, 0, 1]), truncation=0.0)
    assert torch.allclose(w, w_avg.expand_as(w))
    assert torch.equal(g.w_avg, w_avg)  # eval mode does not update it
    w_half = g.mapping(_z(5, 2), torch.tensor([0, 1, 2, 0, 1]), truncation=0.5)
    w_full = g.mapping(_z(5, 2), torch.tensor([0, 1, 2, 0, 1]))
    assert torch.allclose(w_half, w_avg + 0.5 * (w_full - w_avg), atol=1e-6)


def test_training_smoke():
    """30 steps on 8 fixed "images": D learns to separate reals from G's output, and a G step gets gradients."""
    g, d = _models(seed=0)
    torch.manual_seed(0)
    real = torch.rand(8, 3, SIZE, SIZE).mul(2).sub(1)
    labels = torch.arange(8) % 3
    z = _z(8, 5)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    with torch.no_grad():
        fake = g(z, labels, noise="const")

    def d_loss() -> torch.Tensor:
        return discriminator_loss(d(real, labels), d(fake, labels))

    with torch.no_grad():
        initial = d_loss().item()
    for _ in range(30):
        opt_d.zero_grad(set_to_none=True)
        d_loss().backward()
        opt_d.step()
    with torch.no_grad():
        final = d_loss().item()
        gap = (d(real, labels).mean() - d(fake, labels).mean()).item()
    assert final < initial and gap > 0

    # one generator step through DiffAugment and style mixing: gradients reach mapping and synthesis
    g.train()
    loss = generator_loss(d(diff_augment(g.synthesis(mixing_ws(g, z, labels, prob=1.0))), labels))
    loss.backward()
    assert g.mapping_net[0].weight.grad.abs().sum() > 0 and g.const.grad.abs().sum() > 0
