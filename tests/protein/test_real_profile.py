"""The real-data profile on the 195 shared entries, pulled from a loopback RCSB mirror: pull -> validate ->
prepare run for real (gemmi, Great Expectations, MMseqs2, PyG) with the full profile's data rules; the model
is shrunk to one epoch of a small network (the full recipe is the benchmark's: benchmarks/protein.py)."""

from __future__ import annotations

import json

import pytest

from components import stages
from components.config import load_config
from components.project import Paths
from pipelines.protein.project import PROTEIN

pytestmark = pytest.mark.slow


def rcsb_mirror(shared_data, folder):
    """The shared files under RCSB's names ({ID}.pdb.gz, upper case; the sources kept mixed case) and an id file."""
    rows = (shared_data / "protein" / "MANIFEST.tsv").read_text().splitlines()[1:]
    ids = []
    for row in rows:
        name, pdb_id = row.split("\t")[:2]
        (folder / f"{pdb_id.upper()}.pdb.gz").symlink_to(shared_data / "protein" / name)
        ids.append(pdb_id.upper())
    return ids


def test_the_shared_entries_through_a_loopback_mirror(shared_data, loopback, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    ids = rcsb_mirror(shared_data, mirror)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# the shared set\n" + "\n".join(ids) + "\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    cfg = load_config(
        "protein",
        PROTEIN.section,
        overrides=[
            "protein.data.source=rcsb",
            f"protein.data.mirror={loopback(mirror)}",
            "protein.data.fmt=pdb",
            f"protein.data.ids_file={ids_file}",
        ],
        profile="full",
    )
    paths = Paths.of("protein", tmp_path / "data")
    for stage in ("pull", "validate", "prepare"):
        stages.run(PROTEIN, cfg, stage, paths)
    manifest = json.loads((paths.raw / "manifest.json").read_text())
    assert len(ids) == 195 and len(list(paths.raw.glob("*.pdb.gz"))) == 195
    assert "107L" in json.dumps(manifest)  # every pulled file is recorded with its sha256
    summary = json.loads((paths.prepared / "summary.json").read_text())
    chains = {s: summary[s]["chains"] for s in ("train", "val", "test")}
    assert sum(chains.values()) >= 200, chains  # 285 chains, less identical copies and the length rules
    assert chains["test"] >= 0.1 * sum(chains.values()) and chains["val"] > 0, chains
    assert summary["clusters"]["rounds"] >= 1 and summary["test_from"] == "cluster split"
    report = json.loads((paths.validation / "validation.json").read_text())
    assert report["success"], report
