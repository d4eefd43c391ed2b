"""The art plug-in: class-conditional generators of microscopy images, trained from scratch.

Data: the DSB2018 / BBBC038 archive (a URL or a mirror, checksummed, safely extracted), any folder of
PNG / JPEG / 8- or 16-bit TIFF images, or the demo generator (sources.py, demo.py), decoded by images.py,
checked with Great Expectations and tiled with a split by source image (data.py). Models: a diffusion
UNet (diffusers, DDPM training, DDIM sampling, classifier-free guidance, SDEdit: diffusion.py) and a
StyleGAN-style GAN written from scratch (stylegan.py), trained side by side (module.py). The objective is
sample quality: FID in the feature space of an encoder trained on the training tiles (quality.py), on
validation for selection and on test for the gate; evaluate.py adds KID, precision/recall, the
memorisation check and the floor/ceiling reference points; pyfunc.py serves base64 PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.project import Metric, MonitoringModule, Objective, Paths, PyfuncSpec
from pipelines.art.config import ArtSection


class Art(MonitoringModule):
    name = "art"
    section = ArtSection
    monitoring_module = "pipelines.art.monitoring"
    replay_streams = ("unshifted", "histology_burst")
    # select and promote on sample quality, not on a loss: the diffusion loss barely moves while samples improve
    objective = Objective(select=Metric("val/fid", "minimize"), gate=Metric("test/fid", "minimize"))
    description = (
        "Synthetic microscopy tiles of two modalities (fluorescence nuclei, H&E histology), trained from scratch "
        "on the 2018 Data Science Bowl images: a class-conditional diffusion UNet (diffusers; DDPM training, DDIM "
        "sampling with classifier-free guidance, SDEdit from a sketch) and a StyleGAN-style GAN written from "
        "scratch (mapping network, modulated convolutions, noise inputs, style mixing, R1, DiffAugment). Metric: "
        "FID of the diffusion samples against held-out tiles in the feature space of an encoder trained on the "
        "training tiles (not comparable with published Inception FIDs)."
    )
    limitations = (
        "Trained on a few hundred images at 32-64 px: the samples are tile-sized textures, not whole fields of "
        "view, and say nothing biological. Every image it returns is synthetic and must be labelled so in any "
        "publication (the studio's download does). The FID is computed in a domain encoder's feature space, "
        "comparable between versions of this project only. The demo profile's model is trained on drawn "
        "synthetic cells."
    )

    # ---- data -------------------------------------------------------------------------------------

    def pull(self, cfg, out: Path) -> list[Path]:
        """Images into raw/: the demo generator, a folder's images, or the DSB archive; raw/heldout/ the test_dir."""
        from components.fetch import fetch
        from pipelines.art.sources import image_files, pull_dsb

        data = cfg.project.data
        if data.source == "demo":
            from components.fetch import extract
            from pipelines.art.demo import write_demo

            written = write_demo(
                out / "demo", data.demo_fluorescence, data.demo_histology, cfg.seed, side=data.demo_side
            )
            archives = [f for f in written if f.suffix == ".zip"]
            for archive in archives:  # the same safe extraction as a downloaded archive
                extract(archive, out / "demo")
                archive.unlink()
            files = image_files(out)
        elif data.source == "files":
            root = Path(data.images_dir)
            files = [fetch(str(f), out / f.relative_to(root)) for f in image_files(root)]
        else:
            files = image_files(pull_dsb(out, data.dsb_url, data.dsb_checksum))
        if data.test_dir:
            root = Path(data.test_dir)
            files += [fetch(str(f), out / "heldout" / f.relative_to(root)) for f in image_files(root)]
        return [Path(f) for f in files]

    def checks(self, cfg, paths: Paths):
        from pipelines.art.data import checks

        return checks(paths.raw, cfg.project.data)

    def prepare(self, cfg, paths: Paths, out: Path) -> dict:
        from pipelines.art.data import prepare

        return prepare(paths.raw, cfg.project.data, cfg.project.quality, cfg.seed, out)

    def datamodule(self, cfg, paths: Paths):
        from pipelines.art.data import ArtData

        train = cfg.project.train
        return ArtData(paths.prepared, train.batch_size, cfg.seed, train.num_workers, cfg.project.data.symmetries)

    # ---- model ------------------------------------------------------------------------------------

    def architecture(self, cfg, size: int) -> dict:
        d, g = cfg.project.diffusion, cfg.project.gan
        return {
            "size": size,
            "n_classes": 2,
            "diffusion_cfg": {"channels": list(d.channels), "layers_per_block": d.layers_per_block, "attention": d.attention,
                              "conditional": d.conditional},
            "gan_cfg": {
                "generator": {"z_dim": g.z_dim, "w_dim": g.w_dim, "mapping_layers": g.mapping_layers, "channels": g.g_channels,
                              "conditional": g.conditional},
                "discriminator": {"channels": g.d_channels, "conditional": g.conditional},
            },
        }  # fmt: skip

    def build_module(self, cfg, datamodule, hparams: dict):
        from pipelines.art.data import load_encoder
        from pipelines.art.module import ArtModule, ArtNets

        section = cfg.project
        d, g, q = section.diffusion, section.gan, section.quality
        architecture = self.architecture(cfg, datamodule.meta["size"])
        settings = {
            "lr": hparams.get("lr", d.lr),
            "gan_lr": hparams.get("gan_lr", g.lr),
            "timesteps": d.timesteps,
            "schedule": d.schedule,
            "cond_drop": d.cond_drop,
            "ema": d.ema,
            "guidance": d.guidance,
            "augment": g.augment,
            "r1_gamma": g.r1_gamma,
            "r1_every": g.r1_every,
            "mixing": g.mixing,
            "truncation": g.truncation,
            "val_samples": q.val_samples,
            "val_steps": q.val_steps,
            "architecture": architecture,
        }
        encoder = load_encoder(datamodule.prepared)
        return ArtModule(ArtNets(**architecture), settings, encoder, datamodule.meta["class_shares"])

    def search_space(self, cfg, trial) -> dict:
        """Both learning rates log-uniform within 3x of params.yaml's (the architecture stays fixed)."""
        d, g = cfg.project.diffusion, cfg.project.gan
        return {
            "lr": trial.suggest_float("lr", d.lr / 3, d.lr * 3, log=True),
            "gan_lr": trial.suggest_float("gan_lr", g.lr / 3, g.lr * 3, log=True),
        }

    def evaluate(self, cfg, net, datamodule, paths: Paths):
        from pipelines.art.evaluate import evaluate
        from pipelines.art.pyfunc import ArtModel

        return evaluate(ArtModel.from_dir(paths.model), datamodule, cfg)

    def export(self, cfg, module, paths: Paths, out: Path) -> None:
        """model.json (architecture, sampling defaults, limits), unet.pt and generator.pt (the EMA weights)."""
        import torch

        from pipelines.art.images import CLASSES

        h, serve = module.hparams, cfg.project.serve
        config = {
            "architecture": h["architecture"],
            "classes": list(CLASSES),
            "scheduler": dict(module.scheduler.config),
            "steps": cfg.project.diffusion.steps,
            "guidance": h["guidance"],
            "truncation": h["truncation"],
            "max_count": serve.max_count,
            "max_steps": serve.max_steps,
            "max_guidance": serve.max_guidance,
            "max_sketch_bytes": serve.max_sketch_bytes,
            "lr": h["lr"],
            "gan_lr": h["gan_lr"],
        }
        (out / "model.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        torch.save(module.nets.unet_ema.state_dict(), out / "unet.pt")
        torch.save(module.nets.generator_ema.state_dict(), out / "generator.pt")

    def load_module(self, cfg, paths: Paths):
        from pipelines.art.pyfunc import ArtModel

        return ArtModel.from_dir(paths.model).nets

    # ---- serving ----------------------------------------------------------------------------------

    def pyfunc(self, cfg, paths: Paths) -> PyfuncSpec:

        from pipelines.art.pyfunc import ArtModel, artifact_paths

        loaded = ArtModel.from_dir(paths.model)
        example = self.input_example(loaded)
        return PyfuncSpec(
            python_model=str(Path(__file__).with_name("model_code.py")),  # models-from-code: no pickle
            artifacts=artifact_paths(paths.model),
            input_example=example,
            output_example=loaded.predict(None, example),
            requirements=("torch", "diffusers", "numpy", "pandas", "pillow"),
            log_omit=("image",),
        )

    def input_example(self, model):
        """Three requests that use every column (a sampled image, an SDEdit sketch, a GAN style mix), so the
        inferred signature declares them all; the optional ones are null somewhere, hence optional."""
        import numpy as np
        import pandas as pd

        from pipelines.art.evaluate import drawn_sketch
        from pipelines.art.pictures import png_base64, to_uint8

        nan = float("nan")
        sketch = png_base64(to_uint8(drawn_sketch(model.size)[None])[0])
        return pd.DataFrame(
            {
                "label": ["fluorescence", "histology", "fluorescence"],
                "seed": [0, 1, 2],
                "count": [1, 1, 1],
                "model": [None, "diffusion", "gan"],
                "steps": [4.0, 4.0, nan],  # optional whole numbers travel as doubles (payload.Column.mlflow_type)
                "guidance": [2.0, 2.0, nan],
                "sketch": [None, sketch, None],
                "strength": [nan, 0.6, nan],
                "mix_seed": [nan, nan, 3.0],
                "crossover": [nan, nan, float(model.nets["generator"].num_ws // 2)],
            }
        ).astype({"seed": np.int64, "count": np.int64})

    def score(self, python_model, cfg, paths: Paths) -> float:
        """test/fid of a registered version's diffusion samples against the current test tiles."""
        from pipelines.art.data import ArtData
        from pipelines.art.evaluate import diffusion_fid

        return diffusion_fid(python_model, ArtData(paths.prepared, 64, cfg.seed), cfg)

    def app(self, cfg, host: str = "127.0.0.1", port: int = 7860) -> None:
        from pipelines.art.app import launch

        launch(cfg, host=host, port=port)


ART = Art()
