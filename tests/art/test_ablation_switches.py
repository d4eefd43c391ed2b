"""The ablation switches of the art generators (issue 12): augmentation and class conditioning, on or off.

- augmentation: `data.symmetries` (the 8 symmetries of the square on training tiles, both models) and
  `gan.augment` (DiffAugment before the discriminator, "" = off);
- conditioning: `diffusion.conditional` (false: the null class only, label and guidance ignored) and
  `gan.conditional` (false: G and D read one constant class).
A fake prepared folder (random 16 px tiles, an untrained feature encoder) stands in for prepare, so the
project's own datamodule / build_module / export / evaluate run on it in seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from components.config import load_config
from components.project import Paths
from pipelines.art.project import ART

SIZE = 16
TINY = {
    "data": {"source": "demo", "size": SIZE},
    "diffusion": {"channels": [8, 16], "layers_per_block": 1, "attention": False, "timesteps": 20, "steps": 2},
    "gan": {"z_dim": 8, "w_dim": 8, "mapping_layers": 1, "g_channels": 8, "d_channels": 8},
    "quality": {"val_samples": 4, "test_samples": 4, "val_steps": 2},
    "train": {"batch_size": 4},
    "tune": {},
    "register": {},
}


def config(tmp_path, overrides=()):
    params = {
        "profile": "demo",
        "seed": 0,
        "tracking": {"uri": "sqlite:///mlflow.db"},
        "art": TINY,
        "profiles": {"demo": {}, "full": {}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return load_config("art", ART.section, path, "demo", [f"art.{o}" for o in overrides])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(tmp folder, paths): what prepare leaves, faked: tiles per split, an (untrained) encoder, meta.json."""
    from pipelines.art.quality import FeatureEncoder

    tmp = tmp_path_factory.mktemp("art")
    paths = Paths.of("art", tmp / "data")
    paths.prepared.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        images = rng.integers(0, 256, (n, 3, SIZE, SIZE), dtype=np.uint8)
        labels = np.arange(n) % 2
        np.savez_compressed(paths.prepared / f"{split}.npz", images=images, labels=labels, sources=labels)
    torch.manual_seed(0)
    torch.save(FeatureEncoder(SIZE, 2, dim=16).state_dict(), paths.prepared / "encoder.pt")
    meta = {"size": SIZE, "class_shares": [0.5, 0.5], "encoder": {"size": SIZE, "n_classes": 2, "dim": 16}}
    (paths.prepared / "meta.json").write_text(json.dumps(meta))
    return tmp, paths


def build(prepared, *overrides):
    tmp, paths = prepared
    cfg = config(tmp, overrides)
    data = ART.datamodule(cfg, paths)
    torch.manual_seed(0)  # the same initial weights for every variant: only the switch differs
    return cfg, data, ART.build_module(cfg, data, {})


def fit_one_step(module, data):
    """One training batch and one validation epoch through Lightning (the optimisers are manual, so a Trainer)."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        fast_dev_run=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data.loader("train", train=True), data.loader("val", train=False))
    return trainer.callback_metrics


def test_symmetries_off_feeds_the_stored_tiles(prepared):
    from pipelines.art.data import to_float

    images, _ = build(prepared)[1].arrays("train")
    stored = to_float(images)
    for symmetries, changed in ((True, True), (False, False)):
        dataset = build(prepared, f"data.symmetries={str(symmetries).lower()}")[1].loader("train", train=True).dataset
        moved = [not torch.equal(dataset[i][0], stored[i]) for i in range(len(stored))]
        assert any(moved) == changed  # 8 tiles: the chance all 8 draw the identity is 8^-8


def test_an_empty_diffaugment_policy_is_the_identity():
    from pipelines.art.stylegan import diff_augment

    x = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    assert torch.equal(diff_augment(x, ""), x)
    assert not torch.equal(diff_augment(x, "color,translation,cutout"), x)


def class_labels_seen(unet, run, *args) -> list[torch.Tensor]:
    """The class labels each UNet call of run(*args) received."""
    seen = []
    hook = unet.register_forward_pre_hook(lambda _, _args, kw: seen.append(kw["class_labels"]), with_kwargs=True)
    run(*args)
    hook.remove()
    return seen


def test_unconditional_diffusion_trains_on_the_null_class_and_ignores_label_and_guidance(prepared):
    from pipelines.art import diffusion

    for conditional in (True, False):
        _, data, module = build(prepared, f"diffusion.conditional={str(conditional).lower()}")
        unet = module.nets.unet
        assert unet.conditional is conditional and module.nets.unet_ema.conditional is conditional
        labels = torch.tensor([0, 1] * 16)
        images = torch.zeros(len(labels), 3, SIZE, SIZE)
        (seen,) = class_labels_seen(unet, diffusion.training_loss, unet, module.scheduler, images, labels, 2, 0.1)
        assert (seen == 2).all() != conditional  # 2 is the null class; conditional keeps most labels
        config = module.scheduler.config
        a = diffusion.sample(unet, config, [0], [7], 2, steps=2, guidance=3.0)
        b = diffusion.sample(unet, config, [1], [7], 2, steps=2, guidance=0.0)
        assert torch.allclose(a, b) != conditional  # unconditional: same seed, same image, whatever was asked


def test_unconditional_gan_reads_no_class(prepared):
    _, _, module = build(prepared, "gan.conditional=false")
    _, _, conditional = build(prepared)
    z, x = torch.randn(2, 8), torch.rand(2, 3, SIZE, SIZE)
    zeros, ones = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    for nets, same in ((module.nets, True), (conditional.nets, False)):
        g, d = nets.generator.eval(), nets.discriminator
        with torch.no_grad():
            assert torch.allclose(g(z, zeros, noise="const"), g(z, ones, noise="const")) == same
            assert torch.allclose(d(x, zeros), d(x, ones)) == same


def test_every_switch_off_trains_a_step_serves_and_evaluates(prepared, tmp_path):
    from pipelines.art.evaluate import evaluate
    from pipelines.art.pyfunc import ArtModel

    _, paths = prepared
    off = ("data.symmetries=false", 'gan.augment=""', "diffusion.conditional=false", "gan.conditional=false")
    cfg, data, module = build(prepared, *off)
    metrics = fit_one_step(module, data)
    assert np.isfinite(float(metrics["val/fid"])) and np.isfinite(float(metrics["train/loss"]))
    assert 0.0 <= float(metrics["val/recognition"]) <= 1.0  # the ablation table's view of conditioning
    ART.export(cfg, module, paths, tmp_path)
    model = ArtModel.from_dir(tmp_path)
    arch = model.config["architecture"]
    assert arch["diffusion_cfg"]["conditional"] is False and arch["gan_cfg"]["generator"]["conditional"] is False
    # served: the requested modality changes nothing, for either generator
    assert torch.allclose(model.diffusion([0], [3], steps=2), model.diffusion([1], [3], steps=2))
    assert torch.allclose(model.gan([0], [3]), model.gan([1], [3]))
    evaluation = evaluate(model, data, cfg)  # what the evaluate hook runs on the exported model
    assert 0.0 <= evaluation.metrics["test/recognition"] <= 1.0  # what conditioning buys: read it beside the base
    assert np.isfinite(evaluation.metrics["test/fid"])
