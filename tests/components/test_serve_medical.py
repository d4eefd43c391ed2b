"""The medical pyfunc's request checks (pipelines/medical/serving/pyfunc.py), without a trained network:
the payload columns (components/payload.py), the training data's rules for age/sex/view, and the image
limits read from the header before any pixel is decoded."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import pandas as pd
import pytest
from PIL import Image

from components.payload import signature_problems
from pipelines.medical.serving import pyfunc as M
from pipelines.medical.sources.nih import FINDINGS


@pytest.fixture()
def model():
    classifier = M.ChestXrayClassifier()
    classifier.config = {"findings": list(FINDINGS)}  # read_request needs no weights
    return classifier


def encoded(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_header_only(width: int, height: int) -> str:
    """A PNG whose header says width x height (8-bit gray) and whose pixel data is one tiny chunk:
    what a 40 kB file of 6000 x 6000 pixels looks like before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )
    return base64.b64encode(data).decode("ascii")


GOOD = encoded(Image.new("L", (64, 64), 100))


def request(**cells) -> pd.DataFrame:
    row = {"image": GOOD, "age": 58.0, "sex": "F", "view": "PA"} | cells
    return pd.DataFrame([{"image": GOOD, "age": 30.0, "sex": "M", "view": "AP"}, row])


def refused(model, frame, *fragments):
    with pytest.raises(M.InputError) as info:
        model.read_request(frame)
    assert isinstance(info.value, ValueError)  # the server answers it with 422
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


def test_a_valid_request_is_read(model):
    images, texts = model.read_request(request(age=None, sex="f", view="pa"))
    assert len(images) == 2 and images[0][:4] == b"\x89PNG"
    assert texts == ["age_30 sex_m view_ap", "age_unknown sex_f view_pa"]


def test_a_tiny_image_is_refused(model):
    err = refused(model, request(image=encoded(Image.new("L", (1, 1)))), "column 'image', row 1", "at least 32 px")
    assert err.column == "image" and err.row == 1
    refused(model, request(image=encoded(Image.new("L", (31, 500)))), "31x500")


def test_a_view_sex_or_age_the_model_does_not_know_is_refused(model):
    refused(model, request(view="LATERAL"), "column 'view', row 1", "'LATERAL' is not one of ['PA', 'AP']")
    refused(model, request(sex="X"), "column 'sex', row 1", "not one of ['M', 'F']")
    refused(model, request(age=130.0), "column 'age', row 1", "outside [0, 120]")
    model.config["views"] = ["PA", "AP", "LATERAL"]  # a model trained on more views (model.json `views`)
    assert model.read_request(request(view="lateral"))[1][1] == "age_55 sex_f view_lateral"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixels_are_capped_from_the_header_before_decoding(model, monkeypatch):
    from pipelines.medical.sources import nih

    monkeypatch.setattr(nih, "decode_image", lambda *a: pytest.fail("decoded a film the header should refuse"))
    started = time.perf_counter()
    refused(model, request(image=png_header_only(4500, 4500)), "column 'image', row 1", "4500x4500", "16777216")
    # above twice the cap, PIL's own decompression-bomb check refuses it while reading the header
    refused(model, request(image=png_header_only(6000, 6000)), "column 'image', row 1", "more than 16777216 pixels")
    refused(model, request(image=png_header_only(30000, 30000)), "column 'image', row 1", "more than 16777216")
    assert time.perf_counter() - started < 2.0
    assert Image.MAX_IMAGE_PIXELS <= M.MAX_PIXELS  # PIL's own bomb limit is set to the cap too


def test_files_that_are_not_films_are_refused(model):
    refused(model, request(image="not base64!"), "column 'image', row 1", "not valid base64")
    refused(model, request(image=encoded(Image.new("L", (64, 64)), "GIF")), "column 'image', row 1", "PNG or JPEG")
    refused(model, request(image=encoded(Image.new("CMYK", (64, 64)), "JPEG")), "mode 'CMYK'")
    truncated = base64.b64encode(base64.b64decode(GOOD)[:60]).decode()
    refused(model, request(image=truncated), "column 'image', row 1")
    refused(model, request(image=None), "column 'image', row 1", "required")
    refused(model, pd.DataFrame({"age": [1.0]}), "`image` column")


def test_the_payload_matches_the_signature_register_infers():
    from mlflow.models import infer_signature

    example = pd.DataFrame([{"image": GOOD, "age": 58.0, "sex": "F", "view": "PA"}])  # as project.pyfunc builds it
    assert signature_problems(M.PAYLOAD, infer_signature(example).inputs) == []
