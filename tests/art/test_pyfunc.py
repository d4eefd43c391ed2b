"""The registered art model's behaviour on a tiny untrained model: same seed same image (alone or in a batch),
the caps and refusals of the payload, SDEdit on a drawn sketch, style mixing, and what the inference log keeps."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from components.payload import PayloadError
from pipelines.art.pictures import png_base64, to_uint8
from pipelines.art.pyfunc import ArtModel, decode_image
from tests.art.tiny import LIMITS, SIZE, write_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ArtModel:
    return ArtModel.from_dir(write_tiny_model(tmp_path_factory.mktemp("art_model")))


def request(**row) -> pd.DataFrame:
    return pd.DataFrame([{"label": "fluorescence", "seed": 3, "count": 1, **row}])


@pytest.mark.parametrize("generator", ["diffusion", "gan"])
def test_same_seed_same_image_alone_or_in_a_batch(model, generator):
    batch = model.predict(None, request(model=generator, seed=5, count=3, steps=2))
    again = model.predict(None, request(model=generator, seed=5, count=3, steps=2))
    assert list(batch["image"]) == list(again["image"])  # byte-identical PNGs
    alone = model.predict(None, request(model=generator, seed=6, count=1, steps=2))
    # image k is seed + k: alone or batched, equal up to float rounding (batched kernels sum in another order)
    difference = decode_image(alone["image"][0]).astype(int) - decode_image(batch["image"][1]).astype(int)
    assert np.abs(difference).max() <= 1
    assert list(batch["seed"]) == [5, 6, 7] and list(batch["index"]) == [0, 1, 2]
    assert len(set(batch["image"])) == 3  # different seeds, different images
    assert decode_image(batch["image"][0]).shape == (SIZE, SIZE, 3)


def test_the_class_and_the_guidance_change_the_image(model):
    fluorescence = model.predict(None, request(steps=2))["image"][0]
    histology = model.predict(None, request(label="histology", steps=2))["image"][0]
    unguided = model.predict(None, request(steps=2, guidance=0.0))["image"][0]
    assert len({fluorescence, histology, unguided}) == 3


def test_output_rows_carry_the_request_and_the_statistics(model):
    frame = pd.concat([request(count=2, steps=2), request(model="gan", label="histology", seed=9)], ignore_index=True)
    answer = model.predict(None, frame)
    assert list(answer["row"]) == [0, 0, 1] and list(answer["model"]) == ["diffusion", "diffusion", "gan"]
    for column in ("mean", "std", "saturation", "edges", "dark_share"):
        assert answer[column].notna().all()
    pixels = decode_image(answer["image"][2])
    assert answer["mean"][2] == pytest.approx(pixels.astype(np.float32).mean(axis=2).mean(), abs=1e-3)


@pytest.mark.parametrize(
    "row, column, reason",
    [
        ({"count": LIMITS["max_count"] + 1}, "count", "outside"),
        ({"steps": LIMITS["max_steps"] + 1}, "steps", "outside"),
        ({"guidance": 50.0}, "guidance", "outside"),
        ({"label": "brightfield"}, "label", "not one of"),
        ({"model": "vae"}, "model", "not one of"),
        ({"seed": -1}, "seed", "outside"),
        ({"sketch": "not base64!"}, "sketch", "base64"),
        ({"model": "gan", "sketch": png_base64(np.zeros((8, 8, 3), np.uint8))}, "sketch", "diffusion"),
        ({"mix_seed": 4}, "mix_seed", "GAN"),
        ({"sketch": base64.b64encode(b"GIF89a....").decode()}, "sketch", ""),
    ],
)
def test_requests_beyond_the_caps_are_refused_naming_the_column(model, row, column, reason):
    with pytest.raises(PayloadError) as err:
        model.predict(None, request(**row))
    assert err.value.column == column and err.value.row == 0 and reason in str(err.value)


def drawn_sketch() -> np.ndarray:
    """Two bright discs on a dark ground, drawn at 3x the model size (the pyfunc resizes it)."""
    yy, xx = np.mgrid[: 3 * SIZE, : 3 * SIZE] / (3 * SIZE)
    picture = np.full(yy.shape, 10, np.uint8)
    picture[(yy - 0.3) ** 2 + (xx - 0.3) ** 2 < 0.04] = 230
    picture[(yy - 0.7) ** 2 + (xx - 0.65) ** 2 < 0.02] = 230
    return np.repeat(picture[..., None], 3, axis=2)


def test_sdedit_keeps_more_of_the_sketch_at_low_strength(model):
    sketch = drawn_sketch()
    cell = png_base64(sketch)
    small = model.predict(None, request(sketch=cell, strength=0.05, steps=8))
    full = model.predict(None, request(sketch=cell, strength=1.0, steps=8))
    target = to_uint8(__import__("pipelines.art.pictures", fromlist=["decode_png"]).decode_png(
        base64.b64decode(cell), SIZE)[None])[0].astype(float)  # fmt: skip
    near = np.abs(decode_image(small["image"][0]) - target).mean()
    far = np.abs(decode_image(full["image"][0]) - target).mean()
    assert near < far / 2, (near, far)  # an untrained model: only the sketch itself can make the difference
    again = model.predict(None, request(sketch=cell, strength=0.05, steps=8))
    assert again["image"][0] == small["image"][0]


def test_style_mixing_takes_layout_from_one_seed_and_texture_from_the_other(model):
    num_ws = model.nets["generator"].num_ws
    a = model.predict(None, request(model="gan", seed=1))["image"][0]
    b = model.predict(None, request(model="gan", seed=2))["image"][0]
    assert model.predict(None, request(model="gan", seed=1, mix_seed=2, crossover=num_ws))["image"][0] == a
    assert model.predict(None, request(model="gan", seed=1, mix_seed=2, crossover=0))["image"][0] == b
    mixed = model.predict(None, request(model="gan", seed=1, mix_seed=2, crossover=num_ws // 2))["image"][0]
    assert mixed not in (a, b)


def test_the_declared_payload_matches_the_signature_mlflow_infers(model):
    from mlflow.models import infer_signature

    from components.payload import signature_problems
    from pipelines.art.project import ART

    example = ART.input_example(model)
    assert len(model.predict(None, example)) == 3
    assert signature_problems(model.columns, infer_signature(example).inputs) == []


def test_the_inference_log_keeps_statistics_not_images(model, tmp_path):
    from components.inference_log import CellCap, loggable_outputs, prediction_records

    answer = model.predict(None, request(count=2, steps=2))
    logged = loggable_outputs(prediction_records(answer), cap=CellCap(blobs=tmp_path, omit=frozenset({"image"})))
    assert all(r["image"]["kind"] == "omitted" and r["image"]["bytes"] > 0 for r in logged)
    assert all(isinstance(r["mean"], float) for r in logged) and not any(tmp_path.iterdir())  # no blob written
