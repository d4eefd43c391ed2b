"""AlphaFold DB pulls from a loopback mirror of models written in AFDB's format from real shared structures.

The models are real PDB coordinates (107L, T4 lysozyme, as P00720; 1IFC as P02693) with synthetic pLDDT
values in the B-factor column, written with gemmi's mmCIF writer under AFDB's names. Covered: the CA pLDDT
reader, the mean-pLDDT filter keeping and dropping, the manifest, resuming, another threshold without a
download, a missing version, a file that is not an AlphaFold model, and invalid accessions.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from components.http import PoliteClient
from pipelines.protein.sources.afdb import AfdbError, check_accession, model_filename, pull_models, read_plddt

FAST = 50.0  # requests/s against the loopback


def write_model(source, path, plddt_of):
    """`source`'s protein residues with every atom's B-factor set to plddt_of(n)[i]; returns the values."""
    import gemmi

    structure = gemmi.read_structure(str(source))
    structure.remove_ligands_and_waters()
    structure.setup_entities()
    residues = [r for chain in structure[0] for r in chain]
    values = plddt_of(len(residues))
    for residue, value in zip(residues, values, strict=True):
        for atom in residue:
            atom.b_iso = float(value)
    structure.make_mmcif_document().write_file(str(path))
    return values


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("afdb-mirror")
    protein = shared_data / "protein"
    # confident: mean 77 with a low-confidence tail; unconfident: mean 50
    high = write_model(
        protein / "107L.pdb.gz", folder / model_filename("P00720"), lambda n: np.linspace(55, 99, n).round(2)
    )
    low = write_model(
        protein / "1IFC.pdb.gz", folder / model_filename("P02693"), lambda n: np.linspace(20, 80, n).round(2)
    )
    return folder, {"P00720": high, "P02693": low}


def test_reader_gives_the_ca_plddt(models):
    folder, values = models
    plddt = read_plddt(folder / "AF-P00720-F1-model_v4.cif")
    assert plddt.shape == values["P00720"].shape
    np.testing.assert_allclose(plddt, values["P00720"], atol=1e-3)


def test_filter_keeps_and_drops(models, tmp_path, loopback):
    folder, values = models
    url = loopback(folder)
    out = tmp_path / "afdb"
    high, low = pull_models(["P00720", "p02693"], out, mirror=url, rate=FAST)
    assert (high.accession, high.kept, low.accession, low.kept) == ("P00720", True, "P02693", False)
    assert high.path == out / "AF-P00720-F1-model_v4.cif" and low.path.is_file()  # dropped, but kept on disk
    for model in (high, low):
        expected = values[model.accession]
        assert model.mean_plddt == pytest.approx(expected.mean(), abs=1e-3)
        assert model.fraction_confident == pytest.approx((expected >= 70).mean(), abs=1e-4)
        assert model.n_residues == len(expected)
    records = {f["accession"]: f for f in json.loads((out / "manifest.json").read_text())["files"]}
    assert records["P00720"]["kept"] is True and records["P02693"]["kept"] is False
    assert records["P02693"]["url"] == f"{url}/AF-P02693-F1-model_v4.cif"
    assert records["P00720"]["size"] == (folder / "AF-P00720-F1-model_v4.cif").stat().st_size


def test_resume_and_another_threshold(models, tmp_path, loopback):
    folder, _ = models
    url, out = loopback(folder), tmp_path / "afdb"
    client = PoliteClient(rate=FAST, name="test")
    pull_models(["P00720", "P02693"], out, mirror=url, client=client)
    assert client.requests == 2
    models = pull_models(["P00720", "P02693"], out, mirror=url, client=client, min_mean_plddt=40.0)
    assert client.requests == 2  # scored from the manifest, nothing downloaded
    assert [m.kept for m in models] == [True, True]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["kept"] for f in manifest["files"]} == {True} and {f["min_mean_plddt"] for f in manifest["files"]} == {
        40.0
    }


def test_missing_model_and_version(models, tmp_path, loopback):
    folder, _ = models
    url = loopback(folder)
    with pytest.raises(AfdbError, match=rf"P00720: not on the server \({url}/AF-P00720-F1-model_v3.cif"):
        pull_models(["P00720"], tmp_path / "v3", mirror=url, version=3, rate=FAST)
    assert pull_models(["P00720"], tmp_path / "v3", mirror=url, version=3, rate=FAST, skip_missing=True) == []
    manifest = json.loads((tmp_path / "v3" / "manifest.json").read_text())
    assert manifest["missing"] == [{"id": "P00720", "url": f"{url}/AF-P00720-F1-model_v3.cif"}]


def test_an_experimental_structure_is_not_a_model(models, tmp_path, shared_data):
    import gemmi

    folder = tmp_path / "mirror"
    shutil.copytree(models[0], folder)
    structure = gemmi.read_structure(str(shared_data / "protein" / "107L.pdb.gz"))
    for residue in structure[0]["A"]:
        for atom in residue:
            atom.b_iso = 150.0  # a B-factor, not a confidence
    structure.make_mmcif_document().write_file(str(folder / model_filename("P00720")))
    (folder / model_filename("P69905")).write_text("<html>Not found</html>")
    with pytest.raises(AfdbError, match=r"P00720 .*outside pLDDT's 0-100: not an AlphaFold model"):
        pull_models(["P00720"], tmp_path / "afdb", mirror=str(folder))
    with pytest.raises(AfdbError, match=r"P69905 .*not a readable structure"):
        pull_models(["P69905"], tmp_path / "afdb", mirror=str(folder))
    assert not (tmp_path / "afdb" / model_filename("P69905")).exists()  # never left where a model is expected


@pytest.mark.parametrize("bad", ["P0072", "P007201", "1ABC", "P00720-2", "AF-P00720-F1", ""])
def test_invalid_accessions(bad, tmp_path):
    with pytest.raises(ValueError, match="is not a UniProt accession"):
        pull_models(["P00720", bad], tmp_path, mirror="http://127.0.0.1:9/")  # refused before any network
    assert not (tmp_path / "manifest.json").exists()


def test_valid_accessions_and_names():
    assert [check_accession(a) for a in ("P00720", "q9xyz1", "A0A023GPI8", "O15552")] == [
        "P00720",
        "Q9XYZ1",
        "A0A023GPI8",
        "O15552",
    ]
    assert model_filename("P00720", version=2) == "AF-P00720-F1-model_v2.cif"
    with pytest.raises(ValueError, match="positive integer"):
        model_filename("P00720", version=0)
    with pytest.raises(TypeError):
        pull_models("P00720", "unused")


def test_the_pipeline_pulls_only_the_confident_models(models, tmp_path, loopback):
    """source: afdb through the plug-in: the unconfident model stays on disk (a re-pull skips it) but is not
    counted by validate and prepare (raw/afdb/kept.txt)."""
    from components.config import load_config
    from pipelines.protein.data import raw_files
    from pipelines.protein.project import PROTEIN

    folder, _ = models
    cfg = load_config(
        "protein",
        PROTEIN.section,
        profile="full",
        overrides=[
            "protein.data.source=afdb",
            "protein.data.accessions=[P00720, P02693]",
            f"protein.data.afdb_mirror={loopback(folder)}",
        ],
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    kept = PROTEIN.pull(cfg, raw)
    assert [p.name for p in kept] == [model_filename("P00720")]
    assert (raw / "afdb" / model_filename("P02693")).is_file()
    pool, held = raw_files(raw)
    assert [p.name for p in pool] == [model_filename("P00720")] and held == []
