"""The clinician app: its input checks, and a real browser (Debian Chromium via playwright) driving
the Gradio app built on a tiny demo model registered in a temporary MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.medical.serving.app import MAX_BYTES, InputError, check_age, read_image
from tests.browser import CHROMIUM, CHROMIUM_ARGS, free_port

REPO = Path(__file__).resolve().parents[2]
NIH_SAMPLE = Path(__file__).parents[2].parent / "shared/data/medical/nih_chestxray14/images/00000100_000.png"


# ---- input checks, no browser ---------------------------------------------------------------


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="upload"):
        read_image(None)


def test_non_image_is_refused(tmp_path):
    (tmp_path / "notes.png").write_text("this is a text file, not an X-ray\n")
    with pytest.raises(InputError, match="not an image"):
        read_image(tmp_path / "notes.png")


def test_huge_files_are_refused(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: no 20 MB written
    with pytest.raises(InputError, match="too large"):
        read_image(big)
    wide = tmp_path / "wide.png"
    Image.new("L", (4500, 4500)).save(wide)  # a small file: the pixels are refused from the header
    with pytest.raises(InputError, match="4500x4500 px"):
        read_image(wide)


def test_images_the_model_refuses_are_refused_by_the_app_too(tmp_path):
    """The app applies the registered model's own image limits (pyfunc.check_image_header)."""
    Image.new("L", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(InputError, match="at least 32 px"):
        read_image(tmp_path / "dot.png")
    Image.new("L", (64, 64)).save(tmp_path / "film.gif")
    with pytest.raises(InputError, match="PNG or JPEG"):
        read_image(tmp_path / "film.gif")


def test_modes_are_converted_to_gray(tmp_path):
    Image.new("RGBA", (40, 32), (100, 100, 100, 255)).save(tmp_path / "rgba.png")
    Image.new("RGB", (40, 32), (50, 50, 50)).save(tmp_path / "rgb.jpg")
    for name in ("rgba.png", "rgb.jpg"):
        film = read_image(tmp_path / name)
        assert film.dtype == np.uint8 and film.shape == (32, 40)
    assert read_image(NIH_SAMPLE).ndim == 2  # the real RGBA sample


def test_age_checks():
    assert check_age(None) is None and check_age("") is None
    assert check_age(55) == 55.0
    for bad in (-1, 121, float("nan"), "abc"):
        with pytest.raises(InputError, match="Age"):
            check_age(bad)


# ---- the app in a real browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from components import stages
    from components.config import load_config, quiet_environment
    from components.project import Paths
    from pipelines.medical.project import MEDICAL
    from pipelines.medical.serving.app import build_app, load_champion

    quiet_environment()
    tmp = tmp_path_factory.mktemp("medical_app")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    cfg = load_config(
        "medical",
        MEDICAL.section,
        REPO / "params.yaml",
        "demo",
        [
            "medical.train.max_epochs=1",
            "medical.data.demo_patients=40",
            "medical.bootstrap=10",
            "medical.gradcam_images=1",
        ],
    )
    paths = Paths.of("medical", tmp / "data")
    for stage in ("pull", "validate", "prepare", "train", "evaluate", "register"):
        stages.run(MEDICAL, cfg, stage, paths)
    classifier, info = load_champion(cfg.model_name)
    assert info["model"] == "medical-demo"
    app = build_app(classifier, info)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True)
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "info": info}
    finally:
        app.close()
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(60_000)
            page.goto(app_url["url"])
            yield page
        finally:
            browser.close()


def _rows(page) -> list[list[str]]:
    """The table's body cells by row (Gradio 6 renders them as role=gridcell with data-row/col)."""
    cells = page.eval_on_selector_all(
        "#findings [role=gridcell]", "els => els.map(e => [e.dataset.row, e.dataset.col, e.innerText.trim()])"
    )
    rows: dict = {}
    for r, c, text in cells:
        rows.setdefault(r, {})[int(c)] = text
    return [[row[c] for c in sorted(row)] for _, row in sorted(rows.items(), key=lambda kv: int(kv[0]))]


def test_browser_predicts_and_explains_a_real_film(app_url, page, tmp_path):
    from pipelines.medical.sources.nih import FINDINGS

    assert Image.open(NIH_SAMPLE).mode == "RGBA"
    notice = page.get_by_text("Research use only — not for clinical decisions")
    notice.wait_for()
    assert notice.is_visible()
    page.locator("#upload input[type=file]").set_input_files(str(NIH_SAMPLE))
    page.get_by_text("00000100_000.png").first.wait_for()
    page.locator("#age input").fill("58")
    page.locator("#sex").get_by_text("M", exact=True).click()
    page.locator("#view").get_by_text("PA", exact=True).click()
    page.locator("#predict").click()
    page.locator("#status").get_by_text("Top finding").wait_for()
    page.wait_for_function("document.querySelectorAll('#findings [role=gridcell]').length >= 56")
    rows = _rows(page)
    assert [len(r) for r in rows] == [4] * 14, rows  # finding, probability, threshold, above
    names, probs = set(), []
    for name, prob, threshold, above in rows:
        names.add(name)
        probs.append(float(prob))
        assert threshold == "n/a" or 0.0 <= float(threshold) <= 1.0, threshold
        assert above in ("yes", "no")
    assert names == set(FINDINGS)
    assert len(probs) == 14 and all(0.0 <= p <= 1.0 for p in probs)
    assert probs == sorted(probs, reverse=True)
    img = page.locator("#overlay img")
    img.first.wait_for()
    assert (img.first.get_attribute("src") or "") != ""
    assert f"v{app_url['info']['version']}" in page.locator("#version").inner_text()
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_browser_refuses_a_non_image(page, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello, this is not a chest X-ray\n")
    page.locator("#upload input[type=file]").set_input_files(str(fake))
    page.get_by_text("fake.png").first.wait_for()
    page.locator("#predict").click()
    message = page.locator("#status").get_by_text("not an image")
    message.wait_for()
    assert message.is_visible()
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and 'File "' not in text
