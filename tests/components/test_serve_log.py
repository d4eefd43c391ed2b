"""components/inference_log.py on its own: large cells logged as capped summaries (and restored from
their blobs), table summaries, the tolerant reader, and who imports the log module."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components import inference_log as L

REPO = Path(__file__).resolve().parents[2]


def test_a_long_string_cell_is_logged_as_a_capped_summary_and_restored_from_its_blob(tmp_path):
    image = base64.b64encode(np.random.default_rng(0).bytes(30_000)).decode()  # a 40 kB base64 "image"
    frame = pd.DataFrame({"image": [image, "short"], "age": [50.0, None]})
    cap = L.CellCap(blobs=tmp_path / "blobs")
    logged = L.loggable(frame, cap=cap)
    cell = logged[0]["image"]
    digest = hashlib.sha256(image.encode()).hexdigest()
    assert cell == {
        "summary": True,
        "kind": "text",
        "bytes": len(image),
        "sha256": digest,
        "stored": True,
        "head": image[: L.CELL_HEAD_CHARS],
    }
    assert logged[1] == {"image": "short", "age": None}
    assert len(L.encode_record({"inputs": logged})) < 1000  # the line stays small
    assert (tmp_path / "blobs" / digest[:2] / digest).read_text() == image
    assert L.restore_cells(logged, tmp_path / "blobs")[0]["image"] == image
    again = L.loggable(frame, cap=cap)  # content-addressed: stored once
    assert again == logged and len(list((tmp_path / "blobs").rglob("*"))) == 2


def test_without_blobs_the_cell_is_gone_and_restoring_says_so(tmp_path):
    logged = L.loggable(pd.DataFrame({"text": ["x" * 50]}), cap=L.CellCap(max_chars=10))
    assert logged[0]["text"]["stored"] is False and logged[0]["text"]["bytes"] == 50
    with pytest.raises(L.MissingBlob, match="no stored copy"):
        L.restore_cells(logged, tmp_path / "blobs")


def test_a_big_nested_list_output_is_capped_with_its_shape(tmp_path):
    contact_map = np.arange(100 * 100, dtype=float).reshape(100, 100).tolist()
    records = [{"id": "a", "contacts": contact_map}, {"id": "b", "contacts": [[1.0, 2.0]]}]
    cap = L.CellCap(blobs=tmp_path / "blobs")
    logged = L.loggable_outputs(records, cap=cap)
    assert logged[0]["contacts"]["kind"] == "array" and logged[0]["contacts"]["shape"] == [100, 100]
    assert logged[1] == records[1]
    assert L.restore_cells(logged, tmp_path / "blobs")[0]["contacts"] == contact_map
    images = [np.zeros((3, 64, 64)).tolist()]  # an array output (one generated image per row)
    capped = L.loggable_outputs(images, cap=cap)
    assert capped[0]["shape"] == [3, 64, 64] and capped[0]["summary"] is True


def test_the_cell_count_cap_still_summarises_big_tables():
    frame = pd.DataFrame({"x": np.arange(50.0), "y": ["v" * 40_000] * 50})
    summary = L.loggable(frame, max_cells=20)
    assert summary["summary"] is True and summary["rows"] == 50
    assert summary["stats"]["x"]["mean"] == pytest.approx(24.5)
    assert summary["head"][0]["y"]["kind"] == "text"  # large cells are capped in head/tail too
    assert L.loggable_outputs([{"p": 1.0}] * 30, max_cells=20)["summary"] is True


def test_scan_log_reports_what_is_not_a_record(tmp_path):
    path = tmp_path / "v1.jsonl"
    L.append_record(path, {"status": 200})
    with open(path, "ab") as f:
        f.write(b'[1, 2]\n"x"\n{"broken": \n\n\xff\xfe\n' + b"[" * 5000 + b"\n")
    L.append_record(path, {"status": 422})
    found = list(L.scan_log(path))
    assert [(n, r) for n, r, _ in found if r is not None] == [(1, {"status": 200}), (8, {"status": 422})]
    problems = {n: p for n, _, p in found if p}
    assert problems[2].startswith("not a JSON object (a JSON list)") and problems[3].startswith("not a JSON object")
    assert problems[4].startswith("not JSON") and problems[6].startswith("not JSON") and 7 in problems
    strict = tmp_path / "strict.jsonl"
    strict.write_bytes(b'{"status": 200}\n{"broken": \n')
    with pytest.raises(ValueError, match=r"strict.jsonl:2: not a JSON line"):
        L.read_log(strict)  # the strict reader (tests of the writer) still raises, naming the line


def test_threads_appending_capped_records_lose_nothing(tmp_path):
    path, blobs = tmp_path / "v1.jsonl", tmp_path / "blobs"
    cap = L.CellCap(max_chars=100, blobs=blobs)

    def worker(t):
        for i in range(50):
            L.append_record(path, {"t": t, "i": i, "inputs": L.cap_records([{"s": f"{t}-" * 100}], cap)})

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for p in pool:
        p.start()
    for p in pool:
        p.join()
    records = L.read_log(path)
    assert len(records) == 200 and len(list(blobs.rglob("*/*"))) == 4  # one blob per distinct cell
    assert all(L.restore_cells(r["inputs"], blobs)[0]["s"] == f"{r['t']}-" * 100 for r in records)


def test_monitor_and_replay_use_the_log_module_not_the_server():
    for name in ("monitor.py", "replay.py"):
        tree = ast.parse((REPO / "components" / name).read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "components.serve" not in modules, name
    tree = ast.parse((REPO / "components" / "monitor.py").read_text())
    assert "components.inference_log" in {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert json.loads(L.encode_record({"x": float("nan")})) == {"x": None}
