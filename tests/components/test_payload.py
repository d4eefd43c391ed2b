"""components/payload.py: each checker accepts what it should and refuses the rest with a PayloadError
naming the column, the row and the reason; the column schema matches an MLflow signature."""

from __future__ import annotations

import base64
import gzip
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components import payload as P
from components.payload import PayloadError


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png(size=(40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(buffer, format="JPEG")
    return buffer.getvalue()


def refused(fn, *args, column, row, reason, **kwargs) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert isinstance(err, ValueError)  # the server maps a model's ValueError to 422
    assert (err.column, err.row) == (column, row), str(err)
    assert reason in err.reason, err.reason
    assert str(err).startswith(f"column {column!r}" + (f", row {row}" if row is not None else ""))
    return err


# ---- text -------------------------------------------------------------------------------------


def test_text_accepts_strings_and_refuses_empty_long_and_non_text():
    assert P.check_text(["a title", "another"], "title", max_chars=20) == ["a title", "another"]
    refused(P.check_text, ["ok", "   "], "title", max_chars=20, column="title", row=1, reason="empty")
    refused(P.check_text, ["x" * 21], "title", max_chars=20, column="title", row=0, reason="21 characters")
    refused(P.check_text, ["ok", 5], "title", max_chars=20, column="title", row=1, reason="expected text, got int")
    refused(P.check_text, ["ok", None], "title", max_chars=20, column="title", row=1, reason="required")
    assert P.check_text(["ok", None], "title", max_chars=20, required=False) == ["ok", None]


# ---- sequences ----------------------------------------------------------------------------------


def test_sequence_over_the_amino_acid_alphabet():
    assert P.check_sequence(["mktayiakqr"], "seq", max_length=50) == ["MKTAYIAKQR"]  # case-folded
    refused(P.check_sequence, ["MKTBY"], "seq", max_length=50, column="seq", row=0, reason="position 3: 'B'")
    refused(P.check_sequence, ["MK", "A" * 51], "seq", max_length=50, column="seq", row=1, reason="51 letters")
    refused(P.check_sequence, [""], "seq", max_length=50, column="seq", row=0, reason="0 letters")
    refused(P.check_sequence, [["M", "K"]], "seq", max_length=50, column="seq", row=0, reason="got list")
    assert P.check_sequence(["ACGT"], "dna", alphabet=P.NUCLEOTIDES, max_length=4) == ["ACGT"]
    refused(P.check_sequence, ["ACGU"], "dna", alphabet=P.NUCLEOTIDES, max_length=9, column="dna", row=0, reason="'U'")


# ---- files as base64 ----------------------------------------------------------------------------


def test_file_decodes_base64_and_checks_magic_bytes():
    image, photo = png(), jpeg()
    assert P.check_file([b64(image), b64(photo)], "image", max_bytes=10**6, kinds=("png", "jpeg")) == [image, photo]
    zipped = gzip.compress(b"ATOM      1  N   MET A   1")
    assert P.check_file([b64(zipped)], "structure", max_bytes=10**6, kinds=("gzip",)) == [zipped]
    cif = b"# a comment\n\ndata_1ABC\n_entry.id 1ABC\n"
    assert P.check_file([b64(cif)], "structure", max_bytes=10**6, kinds=("mmcif",)) == [cif]
    refused(
        P.check_file, [b64(image), b64(b"GIF89a...")], "image", max_bytes=10**6, kinds=("png", "jpeg"),
        column="image", row=1, reason="not PNG or JPEG",
    )  # fmt: skip
    refused(P.check_file, [b64(b"HEADER pdb")], "s", max_bytes=99, kinds=("mmcif",), column="s", row=0, reason="MMCIF")


def test_invalid_base64_gets_a_clear_message():
    refused(P.check_file, ["iVBOR w0K"], "image", max_bytes=100, column="image", row=0, reason="' ' is not base64")
    refused(P.check_file, ["abc"], "image", max_bytes=100, column="image", row=0, reason="multiple of 4")
    refused(P.check_file, ["ab=c"], "image", max_bytes=100, column="image", row=0, reason="not valid base64")
    refused(P.check_file, ["data:image/png;base64,iVBO"], "image", max_bytes=100, column="image", row=0, reason="':'")
    refused(P.check_file, [b"raw bytes"], "image", max_bytes=100, column="image", row=0, reason="got bytes")
    refused(P.check_file, [""], "image", max_bytes=100, column="image", row=0, reason="empty")


def test_file_size_is_capped_before_decoding(monkeypatch):
    calls = []
    monkeypatch.setattr(P.base64, "b64decode", lambda *a, **k: calls.append(a) or b"")
    err = refused(P.check_file, ["A" * 4000], "image", max_bytes=1000, column="image", row=0, reason="3000 bytes")
    assert "at most 1000" in err.reason and calls == []  # refused from the string's length alone
    with pytest.raises(ValueError, match="unknown file kind"):
        P.check_file(["AAAA"], "image", max_bytes=10, kinds=("tiff",))


# ---- generation requests, labels, numbers -------------------------------------------------------


def test_generation_request_label_seed_and_count():
    frame = pd.DataFrame({"label": ["cat", "Dog"], "seed": [7, 2**32 - 1], "count": [1, 4.0]})
    assert P.check_generation(frame, ["cat", "dog"], max_count=4) == [
        {"label": "cat", "seed": 7, "count": 1},
        {"label": "dog", "seed": 2**32 - 1, "count": 4},
    ]
    bad = {
        "label": (frame.assign(label=["cat", "bird"]), 1, "'bird' is not one of ['cat', 'dog']"),
        "seed": (frame.assign(seed=[-1, 0]), 0, "-1 is outside [0, 4294967295]"),
        "count": (frame.assign(count=[1, 5]), 1, "5 is outside [1, 4]"),
    }
    for column, (request, row, reason) in bad.items():
        refused(P.check_generation, request, ["cat", "dog"], max_count=4, column=column, row=row, reason=reason)
    refused(P.check_generation, frame.assign(seed=[1.5, 2]), ["cat", "dog"], 4, column="seed", row=0, reason="whole")
    refused(P.check_generation, frame.assign(count=[True, 1]), ["cat", "dog"], 4, column="count", row=0, reason="bool")
    refused(
        P.check_generation, frame.drop(columns="seed"), ["cat", "dog"], 4, column="seed", row=None, reason="missing"
    )
    with pytest.raises(PayloadError, match="no rows"):
        P.check_generation(frame.iloc[:0], ["cat"], 4)


def test_numbers_are_finite_and_in_range():
    assert P.check_number([1, 2.5, np.float64(3)], "age", low=0, high=120) == [1.0, 2.5, 3.0]
    refused(P.check_number, [1, float("inf")], "age", column="age", row=1, reason="not a finite number")
    refused(P.check_number, [130], "age", low=0, high=120, column="age", row=0, reason="outside [0, 120]")
    refused(P.check_number, ["58"], "age", column="age", row=0, reason="expected a number, got str")
    assert P.check_number([None, float("nan")], "age", required=False) == [None, None]


def test_first_non_finite_names_column_and_row():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, np.inf], "c": ["x", "y"], "d": [np.nan, 1.0]})
    assert P.first_non_finite(frame) == ("b", 1, np.inf)
    assert P.first_non_finite(frame[["a", "d"]]) is None  # NaN is a missing value
    assert P.first_non_finite(frame[["a", "d"]], allow_missing=False)[:2] == ("d", 0)


# ---- the column schema and the MLflow signature ---------------------------------------------------


def test_columns_imply_the_signature_and_mismatches_are_named():
    from mlflow.models import infer_signature

    columns = [
        P.Column("image", "file", options={"max_bytes": 10**6, "kinds": ("png",)}),
        P.Column("age", "number", required=False),
        P.Column("n", "integer", options={"low": 1, "high": 3}),
    ]
    example = pd.DataFrame({"image": [b64(png())], "age": [50.0], "n": [2]})
    inferred = infer_signature(example).inputs
    assert P.signature_problems(columns, P.input_schema(columns)) == []
    assert P.signature_problems(columns, inferred) == []  # what register infers from the input example
    wrong = infer_signature(pd.DataFrame({"image": [b64(png())], "age": ["50"], "extra": [1]})).inputs
    problems = P.signature_problems(columns, wrong)
    assert "age: the signature says string, the payload says double" in problems
    assert "n: declared, not in the signature" in problems
    assert "extra: in the signature, not declared" in problems
    parsed = P.check_columns(example, columns)
    assert parsed["image"][0][:4] == b"\x89PNG" and parsed["age"] == [50.0] and parsed["n"] == [2]
    with pytest.raises(ValueError, match="kind 'blob'"):
        P.Column("x", "blob")
