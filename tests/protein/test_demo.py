"""pipelines.protein.demo: gemmi-written PDB/mmCIF entries that read back through structure.read_structure.

Geometry is checked on the parsed files (what later stages see), the quirks both in the raw files
(they must really be there) and in the parsed chains (the reader must handle them).
"""

from __future__ import annotations

import gzip
import itertools
import json
import math

import biotite.sequence as bseq
import biotite.sequence.align as balign
import gemmi
import numpy as np
import pytest

from pipelines.protein import demo
from pipelines.protein.demo import QUIRKS, entry_name, entry_quirks, write_demo
from pipelines.protein.structure import chain_table, read_structure


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("protein_demo")
    paths = write_demo(out)
    return out, paths


@pytest.fixture(scope="module")
def chains(demo_dir):
    _, paths = demo_dir
    return {path.name: read_structure(path) for path in paths}


def _text(path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()


def _by_quirk(demo_dir, quirk: str):
    _, paths = demo_dir
    return [path for path, quirks in zip(paths, entry_quirks(len(paths))) if quirk in quirks]


def _identity(a: str, b: str) -> float:
    """Smith-Waterman, BLOSUM62, gaps -10/-1, identities over the shorter sequence: the measure the shared
    set's holdout split used (its SOURCE.md), so the demo families are families by the same yardstick."""
    matrix = balign.SubstitutionMatrix.std_protein_matrix()
    alignment = balign.align_optimal(
        bseq.ProteinSequence(a), bseq.ProteinSequence(b), matrix, gap_penalty=(-10, -1), local=True, max_number=1
    )[0]
    return balign.get_sequence_identity(alignment, mode="shortest")


def test_files_are_real_pdb_and_mmcif_in_both_compressions(demo_dir, chains):
    out, paths = demo_dir
    assert len(paths) == 24 and all(path.parent == out for path in paths)
    suffixes = {"".join(path.suffixes) for path in paths}
    assert suffixes == {".pdb", ".pdb.gz", ".cif", ".cif.gz"}
    for path in paths:
        text = _text(path)
        if ".pdb" in path.suffixes:
            assert text.startswith("HEADER") and "\nSEQRES" in text and "\nCRYST1" in text
        else:
            assert text.startswith(f"data_{path.name[:4]}") and "_entity_poly_seq.mon_id" in text
            gemmi.cif.read_string(text).check_for_missing_values()
        assert chains[path.name], path.name
        assert all(chain.entry == path.name[:4] for chain in chains[path.name])


def test_families_json_groups_entries(demo_dir):
    out, paths = demo_dir
    families = json.loads((out / "families.json").read_text())
    assert sorted(families) == sorted(path.name[:4] for path in paths) == [entry_name(i) for i in range(24)]
    sizes = sorted(list(families.values()).count(name) for name in set(families.values()))
    assert sizes == [4] * 6


def test_consecutive_ca_3_8_and_ideal_backbone(chains):
    for name, entry_chains in chains.items():
        for chain in entry_chains:
            n, ca, c, cb = (chain.coords[:, k] for k in range(4))
            bonded = ~chain.breaks[1:]
            step = np.linalg.norm(np.diff(ca, axis=0), axis=-1)[bonded]
            assert np.abs(step - 3.80).max() < 0.05, name
            assert np.abs(np.linalg.norm(ca - n, axis=-1) - demo.N_CA).max() < 0.01
            assert np.abs(np.linalg.norm(c - ca, axis=-1) - demo.CA_C).max() < 0.01
            assert np.abs(np.linalg.norm(n[1:] - c[:-1], axis=-1)[bonded] - demo.C_N).max() < 0.01
            has_cb = ~np.isnan(cb[:, 0])
            assert np.abs(np.linalg.norm(cb[has_cb] - ca[has_cb], axis=-1) - 1.53).max() < 0.02
            assert (has_cb == np.array([letter != "G" for letter in chain.sequence])).all()


def test_no_ca_clash_between_non_neighbours(chains):
    for name, entry_chains in chains.items():
        for chain in entry_chains:
            ca = chain.coords[:, 1]
            distance = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
            assert distance[np.triu_indices(len(ca), 2)].min() > 3.0, name
        for one, two in itertools.combinations(entry_chains, 2):
            assert np.linalg.norm(one.coords[:, None, 1] - two.coords[None, :, 1], axis=-1).min() > 3.0


def test_folds_are_compact_and_have_long_range_contacts(chains):
    for name, entry_chains in chains.items():
        ca = entry_chains[0].coords[:, 1]
        radius = np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean())
        assert radius < 3.0 * len(ca) ** 0.4, name  # globular-ish (folded proteins: ~2.2 L^0.38)
        distance = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
        far = np.subtract.outer(np.arange(len(ca)), np.arange(len(ca))) >= 12  # i - j >= 12: each pair once
        assert (distance[far] < 8.0).sum() >= 10, name  # long-range contacts for the contact maps


def test_helix_and_strand_geometry():
    """The torsions give the textbook helix (1.5 A rise, 100 deg/residue, 2.3 A radius) and strand rise.
    Helix parameters from CA bisectors (the local axis is the cross product of consecutive bisectors);
    with Engh & Huber bond geometry (-57, -47) gives 99.4 deg, 1.56 A and 2.28 A."""
    start = ((0.0, 1.0, 0.0), (0.0, 0.0, 0.0), (demo.N_CA, 0.0, 0.0))
    helix = np.array([atoms[1] for atoms in demo._extend(*start, demo.HELIX[1], np.tile(demo.HELIX, (30, 1)))])
    bisectors = [(helix[i - 1] - helix[i]) + (helix[i + 1] - helix[i]) for i in range(10, 12)]
    b1, b2 = (b / np.linalg.norm(b) for b in bisectors)
    axis = np.cross(b1, b2) / np.linalg.norm(np.cross(b1, b2))
    twist = math.acos(float(b1 @ b2))
    rise = abs(float((helix[11] - helix[10]) @ axis))
    radius = math.sqrt(float(np.sum((helix[11] - helix[10]) ** 2)) - rise**2) / (2 * math.sin(twist / 2))
    assert math.degrees(twist) == pytest.approx(100.0, abs=2.0)
    assert rise == pytest.approx(1.5, abs=0.08)
    assert radius == pytest.approx(2.3, abs=0.1)
    strand = np.array([atoms[1] for atoms in demo._extend(*start, demo.STRAND[1], np.tile(demo.STRAND, (20, 1)))])
    assert np.linalg.norm(strand[10] - strand[0]) / 10 == pytest.approx(3.3, abs=0.15)


def test_family_identity_rules(demo_dir, chains):
    out, _ = demo_dir
    families = json.loads((out / "families.json").read_text())
    seqres = {entry_chains[0].entry: entry_chains[0].seqres for entry_chains in chains.values()}
    within, across = [], []
    for a, b in itertools.combinations(sorted(seqres), 2):
        (within if families[a] == families[b] else across).append(_identity(seqres[a], seqres[b]))
    assert min(within) >= 0.60
    assert max(across) < 0.25
    assert demo.identity(seqres["9D00"], seqres["9D06"]) == _identity(seqres["9D00"], seqres["9D06"])
    assert min(within) > 0.40 > max(across)  # a 40 % clustering recovers the families exactly


def test_family_members_share_the_fold(demo_dir, chains):
    """Same family: the same backbone up to a rigid motion (pairwise CA distances agree)."""
    out, _ = demo_dir
    families = json.loads((out / "families.json").read_text())
    full = {c[0].entry: c[0] for c in chains.values() if len(c[0].seqres) == c[0].length}
    for a, b in itertools.combinations(sorted(full), 2):
        if families[a] == families[b]:
            da, db = (
                np.linalg.norm(x[:, None] - x[None], axis=-1) for x in (full[a].coords[:, 1], full[b].coords[:, 1])
            )
            assert np.abs(da - db).max() < 0.01


def test_deterministic_for_a_seed(demo_dir, tmp_path):
    out, paths = demo_dir
    again = write_demo(tmp_path / "again")
    assert [p.name for p in again] == [p.name for p in paths]
    for one, two in zip(paths, again):
        assert one.read_bytes() == two.read_bytes(), one.name
    assert (tmp_path / "again" / "families.json").read_bytes() == (out / "families.json").read_bytes()
    other = write_demo(tmp_path / "other", n_entries=2, seed=1)
    assert other[0].read_bytes() != paths[0].read_bytes()


def test_quirks_are_dealt_to_every_set():
    assert set().union(*entry_quirks(24)) == set(QUIRKS)
    assert set().union(*entry_quirks(3)) == set(QUIRKS)
    assert entry_quirks(1) == [frozenset(QUIRKS)]


def test_missing_residues(demo_dir, chains):
    for path in _by_quirk(demo_dir, "missing_termini"):
        (chain,) = chains[path.name]
        assert chain_table([chain])[0]["observed_fraction"] < 1
        assert chain.seqres_index[0] > 0 and chain.seqres_index[-1] < len(chain.seqres) - 1
        assert chain.residue_ids[0] == str(chain.seqres_index[0] + 1)
    for path in _by_quirk(demo_dir, "missing_loop"):
        (chain,) = chains[path.name]
        jumps = np.where(np.diff(chain.seqres_index) > 1)[0]
        assert len(jumps) == 1 and np.diff(chain.seqres_index)[jumps[0]] == 4
        assert chain.breaks.sum() == 1 and chain.breaks[jumps[0] + 1]
    for entry_chains in chains.values():
        for chain in entry_chains:
            assert (np.diff(chain.seqres_index) > 0).all()
            assert all(chain.seqres[j] == letter for letter, j in zip(chain.sequence, chain.seqres_index))


def test_selenomethionine_hetatm_maps_to_m(demo_dir, chains):
    paths = _by_quirk(demo_dir, "mse")
    assert {".pdb" in p.suffixes for p in paths} == {True, False}
    for path in paths:
        text = _text(path)
        assert "HETATM" in text and " MSE " in text and " SE " in text.replace("SE  MSE", " SE ")
        (chain,) = chains[path.name]
        assert chain.modified == {"MSE": 1}
        assert "M" in chain.sequence and chain_table([chain])[0]["nonstandard"] == 0
        structure = gemmi.read_structure(str(path))
        (mse,) = [r for r in structure[0]["A"] if r.name == "MSE"]
        assert mse.het_flag == "H"
        row = chain.residue_ids.index(str(mse.seqid.num))
        assert chain.sequence[row] == "M" and chain.seqres[chain.seqres_index[row]] == "M"


def test_altloc_keeps_the_major_conformer_written_second(demo_dir, chains):
    for path in _by_quirk(demo_dir, "altloc"):
        structure = gemmi.read_structure(str(path))
        (residue,) = [r for r in structure[0]["A"] if any(a.altloc != "\0" for a in r)]
        cas = [a for a in residue if a.name == "CA"]
        assert [(a.altloc, a.occ) for a in cas] == [("A", pytest.approx(0.3)), ("B", pytest.approx(0.7))]
        (chain,) = chains[path.name]
        row = chain.residue_ids.index(str(residue.seqid.num))
        major = cas[1].pos
        np.testing.assert_allclose(chain.coords[row, 1], [major.x, major.y, major.z], atol=1e-3)
        assert cas[0].pos.dist(cas[1].pos) == pytest.approx(demo.ALTLOC_SHIFT, abs=0.01)


def test_waters_and_ligand_present_in_file_dropped_by_reader(demo_dir, chains):
    _, paths = demo_dir
    for path in paths:
        structure = gemmi.read_structure(str(path))
        names = [r.name for chain in structure[0] for r in chain]
        assert names.count("HOH") >= 5
        read = sum(chain.length for chain in chains[path.name])
        assert read == sum(1 for chain in structure[0] for r in chain if r.name not in ("HOH", "SO4"))
    for path in _by_quirk(demo_dir, "ligand"):
        structure = gemmi.read_structure(str(path))
        (sulfate,) = [r for r in structure[0]["A"] if r.name == "SO4"]
        assert len(sulfate) == 5 and sulfate.het_flag == "H"


def test_insertion_code_two_chains_and_header(demo_dir, chains):
    for path in _by_quirk(demo_dir, "insertion"):
        (chain,) = chains[path.name]
        (coded,) = [rid for rid in chain.residue_ids if rid.endswith("A")]
        assert coded[:-1] in chain.residue_ids  # "53A" follows "53"
        assert chain.residue_ids.index(coded) == chain.residue_ids.index(coded[:-1]) + 1
    for path in _by_quirk(demo_dir, "two_chains"):
        one, two = chains[path.name]
        assert (one.chain_id, two.chain_id) == ("A", "B") and one.sequence == two.sequence
    for path, entry_chains in chains.items():
        header = gemmi.read_structure(str(demo_dir[0] / path))
        for chain in entry_chains:
            assert chain.method == "X-RAY DIFFRACTION" and chain.resolution == pytest.approx(header.resolution)
            assert 1.2 <= chain.resolution <= 2.8


def test_formats_argument_and_validation(tmp_path):
    paths = write_demo(tmp_path, n_entries=3, seed=5, formats=("cif",))
    assert [p.name for p in paths] == ["9D00.cif", "9D01.cif.gz", "9D02.cif"]
    everything = [read_structure(p) for p in paths]
    assert sum(len(c) for c in everything) == 4  # one entry carries the two-chain quirk
    with pytest.raises(ValueError, match="formats"):
        write_demo(tmp_path, formats=("xyz",))
    with pytest.raises(ValueError, match="n_entries"):
        write_demo(tmp_path, n_entries=0)
