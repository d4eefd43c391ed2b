"""The art studio: the backend on tiny untrained generators saved the way `export` saves them (generation,
seeds, style mixing, SDEdit from a drawn sketch, the captioned publication PNG, refusals, a missing model), and
a real browser (Debian Chromium via playwright) generating two images, downloading them, then being refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.art.app import Backend, build_app
from tests.art.tiny import LIMITS, SIZE, write_tiny_model
from tests.browser import browser_page

REPO = Path(__file__).resolve().parents[2]
MAX_COUNT = LIMITS["max_count"]


def make_cfg(tmp: Path):
    from components.config import load_config
    from pipelines.art.project import ART

    # a store of the test's own: the default models:/ URI must miss, not find a champion on this machine
    return load_config("art", ART.section, REPO / "params.yaml", "demo", [f"tracking.uri=sqlite:///{tmp}/m.db"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """model.json + unet.pt + generator.pt of untrained tiny nets, with Art.export's keys (no MLflow)."""
    return write_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Backend:
    return Backend(make_cfg(tmp_path_factory.mktemp("store")), tmp_path_factory.mktemp("downloads"))


def test_generate_returns_count_reproducible_images(backend, model_dir):
    images, files, status = backend.generate("fluorescence", "diffusion", 7, 3, 2, 1.5, str(model_dir))
    assert len(images) == 3 and len(files) == 3
    assert all(pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8 for pixels, _ in images)
    assert "seeds 7, 8, 9" in status and str(model_dir) in status and "Traceback" not in status
    again, _, _ = backend.generate("fluorescence", "diffusion", 7, 3, 2, 1.5, str(model_dir))
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(again, images, strict=True))  # same seed, same pixels
    other, _, _ = backend.generate("fluorescence", "diffusion", 8, 1, 2, 1.5, str(model_dir))
    # image k is seed + k, alone or in a batch (up to float rounding of a batched conv: one grey level)
    assert np.abs(other[0][0].astype(int) - images[1][0]).max() <= 1
    assert np.abs(other[0][0].astype(int) - images[0][0]).mean() > 10  # another seed, another image
    gan, _, gan_status = backend.generate("histology", "gan", 3, 2, None, None, str(model_dir))
    assert len(gan) == 2 and not np.array_equal(gan[0][0], gan[1][0]) and "gan generator" in gan_status


def test_style_mix_returns_a_b_and_the_mix(backend, model_dir):
    images, files, status = backend.style_mix("histology", 1, 2, 2, str(model_dir))
    assert len(images) == 3 and len(files) == 3 and "seeds 1, 2, 1" in status
    a, b, mix = (pixels for pixels, _ in images)
    assert not np.array_equal(a, b) and not np.array_equal(mix, a)
    zero, _, _ = backend.style_mix("histology", 1, 2, 0, str(model_dir))
    assert np.array_equal(zero[2][0], b)  # crossover 0: every style from seed B
    model, _ = backend.model(str(model_dir))
    whole, _, _ = backend.style_mix("histology", 1, 2, model.nets["generator"].num_ws, str(model_dir))
    assert np.array_equal(whole[2][0], a)  # crossover num_ws: every style from seed A


def test_sketch_is_rendered_at_the_model_size(backend, model_dir):
    yy, xx = np.mgrid[:96, :128]
    sketch = np.full((96, 128, 3), 255, np.uint8)  # a drawing of any size: centre-cropped and resized
    for cy, cx, r in ((30, 40, 15), (60, 90, 20)):
        sketch[np.abs(np.hypot(yy - cy, xx - cx) - r) < 2] = (200, 0, 120)
    images, files, status = backend.sketch(sketch, "histology", 5, 2, 0.5, 2, None, str(model_dir))
    assert len(images) == 2 and images[0][0].shape == (SIZE, SIZE, 3) and "SDEdit" in status
    editor = {"background": sketch, "layers": [], "composite": np.dstack([sketch, np.full((96, 128), 255, np.uint8)])}
    same, _, _ = backend.sketch(editor, "histology", 5, 1, 0.5, 2, None, str(model_dir))  # gr.ImageEditor, RGBA
    assert np.array_equal(same[0][0], images[0][0])
    assert backend.sketch(None, "histology", 5, 1, 0.5, 2, None, str(model_dir))[-1].startswith("Upload or draw")


def test_publication_png_is_8x_with_a_synthetic_caption(backend, model_dir):
    from PIL import Image

    from pipelines.art.pictures import SYNTHETIC_NOTE

    _, files, _ = backend.generate("fluorescence", "diffusion", 11, 1, 2, 1.5, str(model_dir))
    with Image.open(files[0]) as image:
        text, (width, height) = dict(image.text), image.size
    assert width == 8 * SIZE and height > 8 * SIZE  # 8x, plus the caption strip
    caption = text["Description"]
    assert "Synthetic fluorescence image" in caption and "diffusion" in caption and "seed 11" in caption
    assert "2 DDIM steps, guidance 1.5" in caption and str(model_dir) in caption
    assert text["Comment"] == SYNTHETIC_NOTE and "synthetic" in text["Comment"].lower()
    assert Path(files[0]).name.startswith("synthetic_fluorescence_diffusion_seed11_")


def test_refusals_show_the_payload_message(backend, model_dir):
    images, files, status = backend.generate("fluorescence", "diffusion", 0, MAX_COUNT + 1, 2, 1.5, str(model_dir))
    assert (images, files) == ([], []) and "refused" in status and "column 'count', row 0" in status
    status = backend.generate("fluorescence", "diffusion", 0, 1, 11, 1.5, str(model_dir))[-1]
    assert "column 'steps', row 0" in status and "Traceback" not in status
    status = backend.style_mix("histology", 1, 2, 99, str(model_dir))[-1]
    assert "column 'crossover'" in status


def test_missing_model_says_what_to_run(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")  # a store with no champion
    images, files, status = backend.generate("fluorescence", "diffusion", 0, 1, 2, 1.5, "")
    assert (images, files) == ([], []) and "No model at `models:/art-demo@champion`" in status
    assert "python -m pipelines art all" in status
    (tmp_path / "model.json").write_text("{}")  # a half-written model folder: train again
    assert "run `python -m pipelines art train`" in backend.generate("histology", "gan", 0, 1, 2, 1, str(tmp_path))[-1]


def test_project_has_the_app_capability():
    from components.project import capabilities
    from pipelines.art.project import ART

    assert "app" in capabilities(ART)


@pytest.mark.slow
def test_browser_generates_downloads_and_shows_refusals(model_dir, tmp_path):
    app = build_app(make_cfg(tmp_path))
    with browser_page(app, 1400, 1600) as page:
        page.locator("#model_uri textarea, #model_uri input").first.fill(str(model_dir))
        page.locator("#seed input").first.fill("21")
        page.locator("#count input").first.fill("2")
        page.locator("#steps input[type=number]").first.fill("2")
        page.locator("#generate").click()
        page.locator("#status").get_by_text("seeds 21, 22").wait_for()
        page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2")
        link = page.locator("#downloads a").first
        link.wait_for()
        assert "synthetic_fluorescence_diffusion_seed21_" in (link.get_attribute("href") or "")
        page.get_by_role("tab", name="Style mix (GAN)").click()
        page.locator("#mix").click()
        page.wait_for_function("document.querySelectorAll('#mix_gallery img').length >= 3")
        page.get_by_role("tab", name="Sketch (SDEdit)").click()
        page.locator("#sketch_steps input[type=number]").first.fill("2")
        page.locator("#render").click()  # the blank canvas is a (white) sketch too
        page.locator("#status").get_by_text("SDEdit of a sketch").wait_for()
        page.wait_for_function("document.querySelectorAll('#sketch_gallery img').length >= 1")
        page.get_by_role("tab", name="Generate").click()
        page.locator("#count input").first.fill(str(MAX_COUNT + 1))
        page.locator("#generate").click()
        page.locator("#status").get_by_text("was refused").wait_for()
        assert "column 'count', row 0" in page.locator("#status").inner_text()
        assert "Traceback" not in page.locator("body").inner_text()
