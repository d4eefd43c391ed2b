"""A tiny untrained art model folder, written the way Art.export writes one (model.json, unet.pt, generator.pt):
what the pyfunc, app and monitoring tests load without training anything."""

from __future__ import annotations

import json
from pathlib import Path

SIZE = 16
ARCHITECTURE = {
    "size": SIZE,
    "n_classes": 2,
    "diffusion_cfg": {"channels": [8, 16], "layers_per_block": 1, "attention": False},
    "gan_cfg": {"generator": {"z_dim": 8, "w_dim": 8, "mapping_layers": 1, "channels": 8}, "discriminator": {"channels": 8}},
}  # fmt: skip
LIMITS = {"max_count": 4, "max_steps": 8, "max_guidance": 10.0, "max_sketch_bytes": 100_000}


def write_tiny_model(folder: Path, seed: int = 0) -> Path:
    import torch

    from pipelines.art.diffusion import build_unet, noise_scheduler
    from pipelines.art.images import CLASSES
    from pipelines.art.stylegan import Generator

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = build_unet(SIZE, 2, **ARCHITECTURE["diffusion_cfg"])
    generator = Generator(size=SIZE, n_classes=2, **ARCHITECTURE["gan_cfg"]["generator"])
    torch.save(unet.state_dict(), folder / "unet.pt")
    torch.save(generator.state_dict(), folder / "generator.pt")
    config = {
        "architecture": ARCHITECTURE,
        "classes": list(CLASSES),
        "scheduler": dict(noise_scheduler(1000, "squaredcos_cap_v2").config),
        "steps": 3,
        "guidance": 2.0,
        "truncation": 1.0,
        **LIMITS,
        "lr": 2e-4,
        "gan_lr": 2e-3,
    }
    (folder / "model.json").write_text(json.dumps(config, default=str))
    return folder
