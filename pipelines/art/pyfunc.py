"""The registered art model: a DataFrame of generation requests in, one row per generated image (base64 PNG) out.

Request columns (components/payload.py conventions; every refusal is a PayloadError -> HTTP 422 naming
the column and row):
- `label` (required): the modality, one of the classes ("fluorescence", "histology");
- `seed` (required): image k of the row is drawn from seed + k, so the same seed gives the same image;
- `count` (required): images for this row, 1..max_count;
- `model`: "diffusion" (default) or "gan";
- `steps`, `guidance`: DDIM steps (1..max_steps) and the classifier-free guidance scale (diffusion);
- `sketch` + `strength`: a base64 PNG/JPEG drawing (at most max_sketch_bytes) turned into the modality by
  SDEdit (diffusion only; strength 0.05-1, default 0.6: how much of the drawing is re-imagined);
- `mix_seed` + `crossover`: GAN style mixing: coarse styles (layout) from `seed`, fine styles (texture)
  from `mix_seed` from layer `crossover` on.
A model trained unconditionally (`diffusion.conditional` / `gan.conditional` false, an ablation) accepts
the same requests but ignores `label` (and, for diffusion, `guidance`): the same seed gives the same image
for either modality, and the output's `label` column is only what was asked.
Output, per image: `row` (the request row), `index` (k), `model`, `label`, `seed` (seed + k), `image`
(base64 PNG) and the image statistics the monitor compares (pictures.image_stats). The inference log
keeps the statistics, and of `image` only its size and hash (PyfuncSpec.log_omit).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from components.payload import Column, PayloadError, check_columns

ARTIFACTS = ("model_config", "unet", "generator")
FILES = {"model_config": "model.json", "unet": "unet.pt", "generator": "generator.pt"}
MODELS = ("diffusion", "gan")
DEFAULT_STRENGTH = 0.6  # SDEdit: keeps the drawing's layout, replaces its strokes with the modality's texture


def artifact_paths(model_dir: Path) -> dict[str, str]:
    return {name: str(Path(model_dir) / FILES[name]) for name in ARTIFACTS}


class ArtModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(**{name: context.artifacts[name] for name in ARTIFACTS})

    def load(self, model_config: str, unet: str, generator: str) -> ArtModel:
        import torch

        from pipelines.art.diffusion import build_unet
        from pipelines.art.stylegan import Generator

        self.config = json.loads(Path(model_config).read_text())
        arch = self.config["architecture"]
        self.classes = list(self.config["classes"])
        unet_net = build_unet(arch["size"], arch["n_classes"], **arch["diffusion_cfg"])
        unet_net.load_state_dict(torch.load(unet, map_location="cpu", weights_only=True))
        gan = Generator(size=arch["size"], n_classes=arch["n_classes"], **arch["gan_cfg"]["generator"])
        gan.load_state_dict(torch.load(generator, map_location="cpu", weights_only=True))
        self.nets = torch.nn.ModuleDict({"unet": unet_net, "generator": gan}).eval()
        return self

    @classmethod
    def from_dir(cls, model_dir: Path) -> ArtModel:
        return cls().load(**artifact_paths(model_dir))

    @property
    def size(self) -> int:
        return int(self.config["architecture"]["size"])

    @property
    def columns(self) -> list[Column]:
        c = self.config
        num_ws = self.nets["generator"].num_ws
        return [
            Column("label", "label", options={"labels": self.classes}, description="the modality"),
            Column("seed", "integer", options={"low": 0, "high": 2**32 - 1}, description="random seed"),
            Column("count", "integer", options={"low": 1, "high": c["max_count"]}, description="images"),
            Column("model", "label", required=False, options={"labels": list(MODELS)}, description="generator"),
            Column("steps", "integer", required=False, options={"low": 1, "high": c["max_steps"]}),
            Column("guidance", "number", required=False, options={"low": 0.0, "high": c["max_guidance"]}),
            Column("sketch", "file", required=False, options={"max_bytes": c["max_sketch_bytes"], "kinds": ["png", "jpeg"]}),
            Column("strength", "number", required=False, options={"low": 0.05, "high": 1.0}),
            Column("mix_seed", "integer", required=False, options={"low": 0, "high": 2**32 - 1}),
            Column("crossover", "integer", required=False, options={"low": 0, "high": num_ws}),
        ]  # fmt: skip

    # ---- the generators, on tensors ---------------------------------------------------------------

    def diffusion(self, labels, seeds, steps: int | None = None, guidance: float | None = None):

        from pipelines.art import diffusion

        steps = steps or self.config["steps"]
        guidance = self.config["guidance"] if guidance is None else guidance
        n = len(self.classes)
        return diffusion.sample(self.nets["unet"], self.config["scheduler"], labels, seeds, n, steps, guidance)

    def gan(self, labels, seeds):
        from pipelines.art.stylegan import sample

        return sample(self.nets["generator"], labels, seeds, self.config["truncation"])

    def sdedit(self, sketch: np.ndarray, label: int, seeds, steps=None, guidance=None, strength=DEFAULT_STRENGTH):
        import torch

        from pipelines.art import diffusion

        steps = steps or self.config["steps"]
        guidance = self.config["guidance"] if guidance is None else guidance
        x = torch.as_tensor(sketch, dtype=torch.float32).unsqueeze(0).expand(len(seeds), -1, -1, -1)
        n = len(self.classes)
        return diffusion.sdedit(
            self.nets["unet"], self.config["scheduler"], x, [label] * len(seeds), seeds, n, steps, guidance, strength
        )

    def style_mix(self, label: int, seeds, mix_seeds, crossover: int):
        import torch

        g = self.nets["generator"]
        z_a = torch.stack([torch.randn(g.z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        z_b = torch.stack([torch.randn(g.z_dim, generator=torch.Generator().manual_seed(int(s))) for s in mix_seeds])
        y = torch.full((len(seeds),), label, dtype=torch.long)
        with torch.no_grad():
            return g.style_mix(z_a, z_b, y, crossover, truncation=self.config["truncation"]).clamp(-1, 1)

    # ---- the pyfunc -------------------------------------------------------------------------------

    def images_for(self, request: dict):
        """The (count, 3, S, S) tensor one checked request row asks for."""
        from pipelines.art.pictures import decode_png

        label = self.classes.index(request["label"])
        seeds = [request["seed"] + k for k in range(request["count"])]
        model = request["model"] or "diffusion"
        if model == "gan":
            if request["sketch"] is not None:
                raise PayloadError(
                    "a sketch is turned into an image by the diffusion model: set model to diffusion",
                    "sketch",
                    request["_row"],
                )
            if request["mix_seed"] is not None:
                mix = [request["mix_seed"] + k for k in range(request["count"])]
                crossover = (
                    request["crossover"] if request["crossover"] is not None else self.nets["generator"].num_ws // 2
                )
                return self.style_mix(label, seeds, mix, crossover)
            return self.gan([label] * len(seeds), seeds)
        if request["mix_seed"] is not None:
            raise PayloadError("style mixing is a GAN feature: set model to gan", "mix_seed", request["_row"])
        if request["sketch"] is not None:
            try:
                sketch = decode_png(request["sketch"], self.size)
            except Exception as exc:  # PIL's many decoder errors: one clear refusal
                raise PayloadError(
                    f"the sketch does not decode as an image ({exc})", "sketch", request["_row"]
                ) from None
            strength = request["strength"] if request["strength"] is not None else DEFAULT_STRENGTH
            return self.sdedit(sketch, label, seeds, request["steps"], request["guidance"], strength)
        return self.diffusion([label] * len(seeds), seeds, request["steps"], request["guidance"])  # fmt: skip

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        from pipelines.art.pictures import image_stats, png_base64, to_uint8

        values = check_columns(model_input, self.columns)
        rows = []
        for r, request in enumerate(dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)):
            request["_row"] = r
            pixels = to_uint8(self.images_for(request))
            for k, image in enumerate(pixels):
                rows.append(
                    {
                        "row": r,
                        "index": k,
                        "model": request["model"] or "diffusion",
                        "label": request["label"],
                        "seed": request["seed"] + k,
                        "image": png_base64(image),
                        **image_stats(image),
                    }
                )
        return pd.DataFrame(rows)


def decode_image(cell: str) -> np.ndarray:
    """A base64 PNG of the output back to an H x W x 3 uint8 array (clients, tests, the app)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(cell))) as image:
        return np.asarray(image.convert("RGB"))
