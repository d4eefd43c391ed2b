"""The art studio (Gradio Blocks, 127.0.0.1 by default): synthetic microscopy images from the trained generators,
each downloadable at publication resolution with a caption saying what made it and that it is synthetic.

- Model: a registered version by URI (default `models:/art[-demo]@champion`, the profile's champion) or a local
  model folder holding model.json + unet.pt + generator.pt (what the `train` stage writes to data/art/model).
  Either way the studio calls `ArtModel.predict` itself, so the payload checks are the server's.
- Generate: a modality, the diffusion model (DDIM steps, classifier-free guidance) or the GAN, a seed and a count;
  image k comes from seed + k, so a seed always gives the same image.
- Sketch: a drawing (uploaded or drawn) turned into the modality by SDEdit; `strength` is how much is re-imagined.
- Style mix (GAN): coarse styles (layout) from seed A, fine styles (texture) from seed B from layer `crossover` on.
- Downloads: every image upscaled 8x (nearest) above a caption strip, the caption also in the PNG text chunks.
Nothing here crashes on a missing model or a refused request: the status box shows the model's PayloadError
(column, row, reason) or which stage to run. Gradio is imported inside functions so `python -m pipelines` starts fast.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.art.images import CLASSES

log = logging.getLogger("scifolio.art.app")

MODEL_FILES = ("model.json", "unet.pt", "generator.pt")
SCALE = 8  # publication PNG: nearest-neighbour upscaling, no invented detail
DISPLAY = 256  # gallery images are upscaled (nearest) to about this many pixels


def default_model_uri(cfg) -> str:
    from components.apps import default_model_uri

    return default_model_uri("art", cfg)


def _integer(value):
    """A number field's value as an int when it is integral; anything else as-is, for the model to refuse."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value) if float(value).is_integer() else value


def sketch_base64(sketch) -> str | None:
    """A drawing (numpy array, PIL image or an ImageEditor value) as base64 PNG, transparency flattened onto white."""
    from PIL import Image

    from pipelines.art.pictures import png_base64

    if isinstance(sketch, dict):  # gr.ImageEditor: background, layers and their composite
        sketch = sketch.get("composite") if sketch.get("composite") is not None else sketch.get("background")
    if sketch is None:
        return None
    image = sketch if isinstance(sketch, Image.Image) else Image.fromarray(np.asarray(sketch).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(white, image)
    return png_base64(np.asarray(image.convert("RGB")))


class Backend:
    """What the UI calls; plain methods, so tests can call them without a browser. Each returns (images, files,
    status): images a list of (H x W x 3 uint8 array at the model's size, caption), files the publication PNGs."""

    def __init__(self, cfg, downloads: Path | None = None):
        self.cfg = cfg
        self.downloads = Path(downloads or Path(tempfile.gettempdir()) / "scifolio-art-app")  # Gradio serves it
        self.models: dict = {}  # uri -> (ArtModel, description for captions), loaded once per URI

    def model(self, uri: str):
        """(ArtModel, "what it is") at `uri` (a local model folder or an MLflow model URI), cached."""
        if uri not in self.models:
            from components.apps import load_model
            from pipelines.art.pyfunc import ArtModel

            model = load_model(uri, self.cfg, "art", MODEL_FILES, ArtModel.from_dir)
            self.models[uri] = model, describe_model(uri)
        return self.models[uri]

    def generate(self, label, generator, seed, count, steps, guidance, model_uri):
        request = {"label": label, "model": generator, "seed": _integer(seed), "count": _integer(count)}
        if generator != "gan":
            request.update(steps=_integer(steps), guidance=guidance)
        return self._run(model_uri, [request], f"{generator} generator")

    def sketch(self, sketch, label, seed, count, strength, steps, guidance, model_uri):
        encoded = sketch_base64(sketch)
        if encoded is None:
            return [], [], "Upload or draw a sketch first."
        request = {"label": label, "model": "diffusion", "seed": _integer(seed), "count": _integer(count)}
        request.update(sketch=encoded, strength=strength, steps=_integer(steps), guidance=guidance)
        return self._run(model_uri, [request], f"diffusion generator, SDEdit of a sketch at strength {strength}")

    def style_mix(self, label, seed_a, seed_b, crossover, model_uri):
        """Three images: seed A, seed B and the mix (layout of A, texture of B from layer `crossover` on)."""
        a, b, crossover = _integer(seed_a), _integer(seed_b), _integer(crossover)
        plain = {"label": label, "model": "gan", "count": 1}
        mixed = {**plain, "seed": a, "mix_seed": b, "crossover": crossover}
        what = f"GAN style mix: coarse styles of seed {a}, fine styles of seed {b} from layer {crossover} on"
        return self._run(model_uri, [{**plain, "seed": a}, {**plain, "seed": b}, mixed], what, mix_note=what)

    def _run(self, model_uri, requests: list[dict], what: str, mix_note: str | None = None):
        from components.apps import ModelMissing
        from components.payload import PayloadError
        from pipelines.art.pyfunc import decode_image

        uri = (model_uri or "").strip() or default_model_uri(self.cfg)
        try:
            model, described = self.model(uri)
        except ModelMissing as err:
            return [], [], str(err)
        start, rows = time.perf_counter(), []
        try:
            for request in requests:
                rows.append((request, self._predict(model, request)))
        except PayloadError as err:  # the server's 422: column, row and reason
            return [], [], f"**The request was refused**: {err}"
        except Exception as err:  # anything else: a one-line message in the page, the traceback in the log
            log.exception("generation failed: %s", requests)
            return [], [], f"**The generation failed**: {str(err).splitlines()[0][:300]}"
        elapsed = time.perf_counter() - start
        images, files, seeds = [], [], []
        for request, out in rows:
            for _, row in out.iterrows():
                pixels = decode_image(row["image"])
                is_mix = request.get("mix_seed") is not None
                settings = self._settings(model, request, row)
                caption = f"Synthetic {row['label']} image, {mix_note if is_mix else what}; model {described}; "
                caption += settings
                images.append((pixels, f"mix {request['seed']} x {request['mix_seed']}" if is_mix else settings))
                files.append(self._write(pixels, caption, row))
                seeds.append(int(row["seed"]))
        status = (
            f"{len(images)} synthetic image(s), {what}, seeds {', '.join(map(str, seeds))}; "
            f"{elapsed:.1f} s. Model: {described}. Download the publication PNGs (8x, captioned) below."
        )
        return images, files, status

    @staticmethod
    def _predict(model, request: dict):
        import pandas as pd

        frame = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in request.items() if v is not None})
        return model.predict(None, frame)

    @staticmethod
    def _settings(model, request: dict, row) -> str:
        if row["model"] == "gan":
            return f"seed {int(row['seed'])}, truncation {model.config['truncation']}"
        steps = request.get("steps") or model.config["steps"]
        guidance = request.get("guidance")
        guidance = model.config["guidance"] if guidance is None else guidance
        return f"seed {int(row['seed'])}, {steps} DDIM steps, guidance {guidance}"

    def _write(self, pixels: np.ndarray, caption: str, row) -> str:
        """The publication PNG as a file for download, in a folder Gradio may serve (its temp directory)."""
        from pipelines.art.pictures import publication_png

        self.downloads.mkdir(parents=True, exist_ok=True)
        prefix = f"synthetic_{row['label']}_{row['model']}_seed{int(row['seed'])}_"
        handle = tempfile.NamedTemporaryFile("wb", suffix=".png", prefix=prefix, dir=self.downloads, delete=False)
        with handle:
            handle.write(publication_png(pixels, caption, scale=SCALE))
        return handle.name


def describe_model(uri: str) -> str:
    """`models:/name@alias (version N)` for a registered model, `the local folder PATH` for a trained folder."""
    if not uri.startswith("models:/"):
        return f"the local folder {Path(uri).expanduser().resolve()}"
    try:
        from mlflow import MlflowClient

        name = uri.removeprefix("models:/")
        if "@" in name:
            name, alias = name.split("@", 1)
            version = MlflowClient().get_model_version_by_alias(name, alias).version
        else:
            version = name.rsplit("/", 1)[1]
        return f"{uri} (version {version})"
    except Exception:  # noqa: BLE001 - the caption still names the URI
        return uri


def for_display(images: list) -> list:
    """Gallery items: each image upscaled (nearest) to about DISPLAY px, so a 32 px tile is not a blur."""
    out = []
    for pixels, caption in images:
        factor = max(1, DISPLAY // max(pixels.shape[:2]))
        out.append((np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1), caption))
    return out


def build_app(cfg, downloads: Path | None = None):
    import gradio as gr

    backend = Backend(cfg, downloads)
    diffusion, serve = cfg.project.diffusion, cfg.project.serve  # the profile's defaults and the server's caps
    num_ws = 2 * (int(np.log2(cfg.project.data.size)) - 1)  # the GAN's style inputs at the profile's tile size
    blank = np.full((256, 256, 3), 255, np.uint8)
    with gr.Blocks(title="Art studio") as app:
        gr.Markdown(
            "# Art: synthetic microscopy images\n"
            "Generators trained from scratch on fluorescence and H&E tiles: a diffusion model (DDIM, classifier-free "
            "guidance, SDEdit from a sketch) and a StyleGAN-style GAN (style mixing). **Every image is synthetic**; "
            "the publication PNGs say so in their caption and metadata."
        )
        uri = gr.Textbox(label="Model URI or local model folder", value=default_model_uri(cfg), elem_id="model_uri")
        with gr.Tabs():
            with gr.Tab("Generate", elem_id="tab_generate"):
                with gr.Row():
                    label = gr.Dropdown(list(CLASSES), value=CLASSES[0], label="Modality", elem_id="label")
                    generator = gr.Radio(
                        ["diffusion", "gan"], value="diffusion", label="Generator", elem_id="generator"
                    )
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                    count = gr.Number(
                        value=4, precision=0, label="Images (1 to the model's max_count)", elem_id="count"
                    )
                    steps = gr.Slider(
                        1, serve.max_steps, value=diffusion.steps, step=1, label="DDIM steps", elem_id="steps"
                    )
                    guidance = gr.Slider(
                        0, serve.max_guidance, value=diffusion.guidance, step=0.1, label="Guidance", elem_id="guidance"
                    )
                go = gr.Button("Generate", variant="primary", elem_id="generate")
                gallery = gr.Gallery(label="Images", columns=4, format="png", elem_id="gallery")
            with gr.Tab("Sketch (SDEdit)", elem_id="tab_sketch"):
                with gr.Row():
                    drawing = gr.ImageEditor(
                        value={"background": blank, "layers": [], "composite": blank},
                        type="numpy",
                        label="Sketch: upload or draw",
                        elem_id="sketch",
                    )
                    with gr.Column():
                        s_label = gr.Dropdown(list(CLASSES), value=CLASSES[0], label="Modality", elem_id="sketch_label")
                        s_seed = gr.Number(value=0, precision=0, label="Seed", elem_id="sketch_seed")
                        s_count = gr.Number(value=1, precision=0, label="Images", elem_id="sketch_count")
                        strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength", elem_id="strength")
                        s_steps = gr.Slider(
                            1,
                            serve.max_steps,
                            value=diffusion.steps,
                            step=1,
                            label="DDIM steps",
                            elem_id="sketch_steps",
                        )
                        s_go = gr.Button("Render", variant="primary", elem_id="render")
                s_gallery = gr.Gallery(label="Rendered", columns=4, format="png", elem_id="sketch_gallery")
            with gr.Tab("Style mix (GAN)", elem_id="tab_mix"):
                with gr.Row():
                    m_label = gr.Dropdown(list(CLASSES), value=CLASSES[0], label="Modality", elem_id="mix_label")
                    seed_a = gr.Number(value=0, precision=0, label="Seed A (coarse: layout)", elem_id="seed_a")
                    seed_b = gr.Number(value=1, precision=0, label="Seed B (fine: texture)", elem_id="seed_b")
                    crossover = gr.Slider(0, num_ws, value=num_ws // 2, step=1, label="Crossover", elem_id="crossover")
                m_go = gr.Button("Mix", variant="primary", elem_id="mix")
                m_gallery = gr.Gallery(label="A, B and the mix", columns=3, format="png", elem_id="mix_gallery")
        status = gr.Markdown(elem_id="status")
        files = gr.File(label="Publication PNGs (8x, captioned)", file_count="multiple", elem_id="downloads")

        def show(result):
            images, paths, message = result
            return for_display(images), paths or None, message

        go.click(
            lambda *a: show(backend.generate(*a)),
            [label, generator, seed, count, steps, guidance, uri],
            [gallery, files, status],
        )
        s_go.click(
            lambda d, lb, s, c, st, sp, u: show(backend.sketch(d, lb, s, c, st, sp, None, u)),
            [drawing, s_label, s_seed, s_count, strength, s_steps, uri],
            [s_gallery, files, status],
        )
        m_go.click(
            lambda *a: show(backend.style_mix(*a)),
            [m_label, seed_a, seed_b, crossover, uri],
            [m_gallery, files, status],
        )
    return app


def launch(cfg, host: str = "127.0.0.1", port: int = 7860) -> None:
    from components.config import quiet_environment

    quiet_environment()  # no analytics, no hub calls
    build_app(cfg).launch(server_name=host, server_port=port, share=False)
