"""pipelines.protein.structure on the 195 real PDB entries in ../shared and on broken files in tmp_path.

The facts checked against the real files (which entry has altlocs with a minor first conformer, which
carries TPO/SEP, where residues are missing) were found with gemmi directly, and are asserted here
through gemmi again where possible, so the tests do not just restate the reader's own output.
"""

from __future__ import annotations

import csv
import gzip
import pickle

import gemmi
import numpy as np
import pytest

from pipelines.protein.structure import STANDARD, Chain, StructureError, chain_table, read_structure


@pytest.fixture(scope="module")
def protein_dir(shared_data):
    return shared_data / "protein"


@pytest.fixture(scope="module")
def manifest(protein_dir) -> dict[str, dict]:
    with open(protein_dir / "MANIFEST.tsv", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle, delimiter="\t")}


@pytest.fixture(scope="module")
def parsed(protein_dir) -> dict[str, list[Chain]]:
    """Every real file, parsed once for the module (about 1 s)."""
    return {path.name: read_structure(path) for path in sorted(protein_dir.glob("*.pdb.gz"))}


def _chain(parsed, file: str, chain_id: str) -> Chain:
    return next(chain for chain in parsed[file] if chain.chain_id == chain_id)


def _gemmi_ca(path, chain_id: str, number: int, altloc: str) -> np.ndarray:
    residue = gemmi.read_structure(str(path))[0][chain_id][str(number)][0]
    atom = next(a for a in residue if a.name == "CA" and a.altloc == altloc)
    return np.array([atom.pos.x, atom.pos.y, atom.pos.z], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- real set


def test_every_real_file_parses_with_consistent_arrays(parsed, manifest):
    assert len(parsed) == 195 == len(manifest)
    for file, chains in parsed.items():
        assert chains, file
        for chain in chains:
            length = chain.length
            assert chain.entry == manifest[file]["pdb_id"]
            assert chain.coords.shape == (length, 4, 3) and chain.coords.dtype == np.float32
            assert chain.seqres_index.shape == (length,) and chain.seqres_index.dtype == np.int64
            assert chain.breaks.shape == (length,) and chain.breaks.dtype == np.bool_ and not chain.breaks[0]
            assert chain.b_factors.shape == (length,) and chain.b_factors.dtype == np.float32
            assert len(chain.residue_ids) == length == len(set(chain.residue_ids))
            assert not np.isnan(chain.coords[:, 1]).any(), "every kept residue has a CA"
            assert np.isfinite(chain.b_factors).all()


def test_protein_chains_agree_with_the_manifest(parsed, manifest):
    """MANIFEST's protein chains (from SEQRES) are exactly the chains read. Short peptides would be the
    expected exception; in this set none is below min_length (1RDQ chain I has exactly 20 residues)."""
    mismatches = {}
    for file, row in manifest.items():
        got = sorted(chain.chain_id for chain in parsed[file])
        expected = sorted(row["chains"])  # chain ids are single characters, written without separator
        if got != expected or len(got) != int(row["n_protein_chains"]):
            mismatches[file] = (expected, got)
    assert mismatches == {}
    assert sum(len(chains) for chains in parsed.values()) == 285


def test_min_length_boundary_drops_the_20_residue_peptide(protein_dir):
    path = protein_dir / "1rdq.pdb.gz"
    assert [c.chain_id for c in read_structure(path)] == ["E", "I"]
    assert [c.chain_id for c in read_structure(path, min_length=21)] == ["E"]
    assert read_structure(path, min_length=1000) == []  # protein present, just shorter: no error


def test_method_and_resolution_agree_with_the_manifest(parsed, manifest):
    for file, chains in parsed.items():
        for chain in chains:
            assert chain.method == manifest[file]["method"] == "X-RAY DIFFRACTION"
            assert chain.resolution == pytest.approx(float(manifest[file]["resolution"]))


@pytest.mark.parametrize(
    ("file", "number", "kept", "occupancies"),
    [
        ("3css.pdb.gz", 182, "B", {"A": 0.25, "B": 0.75}),
        ("3css.pdb.gz", 222, "C", {"A": 0.25, "B": 0.25, "C": 0.5}),
        ("1exm.pdb.gz", 21, "B", {"A": 0.4, "B": 0.6}),
        # per-atom occupancies differ in 1IFC PHE 47: CA alone favours B, but the residue's mean favours A
        # (0.50 vs 0.48), and one conformer is kept for the whole residue, never a mix of both
        ("1IFC.pdb.gz", 47, "A", {"A": 0.43, "B": 0.44}),
    ],
    ids=["3css-182", "3css-222", "1exm-21", "1IFC-47"],
)
def test_altlocs_keep_the_highest_occupancy_conformer(protein_dir, parsed, file, number, kept, occupancies):
    path = protein_dir / file
    residue = gemmi.read_structure(str(path))[0]["A"][str(number)][0]
    assert {a.altloc: round(a.occ, 2) for a in residue if a.name == "CA"} == occupancies
    chain = _chain(parsed, file, "A")
    row = chain.residue_ids.index(str(number))
    np.testing.assert_array_equal(chain.coords[row, 1], _gemmi_ca(path, "A", number, kept))
    # gemmi's own remove_alternative_conformations keeps the first altloc: the minor one here
    structure = gemmi.read_structure(str(path))
    structure.remove_alternative_conformations()
    first = structure[0]["A"][str(number)][0]["CA"][0].pos
    np.testing.assert_allclose(_gemmi_ca(path, "A", number, "A"), [first.x, first.y, first.z], atol=1e-3)


def test_real_modified_residues_map_to_their_parent(parsed):
    kinase = _chain(parsed, "1rdq.pdb.gz", "E")  # phosphothreonine 197, phosphoserine 338
    assert kinase.modified == {"TPO": 1, "SEP": 1}
    assert kinase.sequence[kinase.residue_ids.index("197")] == "T"
    assert kinase.sequence[kinase.residue_ids.index("338")] == "S"
    hpr = _chain(parsed, "2HPR.pdb.gz", "A")
    assert hpr.modified == {"CSO": 1}
    # TRN (aza-tryptophan) is not in gemmi's table: kept as X and counted as nonstandard
    rows = {row["entry"]: row for row in chain_table(parsed["1AM7.pdb.gz"])}
    assert rows["1AM7"]["nonstandard"] == 4 and parsed["1AM7.pdb.gz"][0].sequence.count("X") == 4


def test_mse_written_as_hetatm_reads_as_methionine(protein_dir, tmp_path):
    """107L with its MET residues rewritten the way selenomethionine entries are deposited: HETATM MSE
    with SE for SD (and MSE in SEQRES)."""
    original = gzip.decompress((protein_dir / "107L.pdb.gz").read_bytes()).decode()
    lines = []
    for line in original.splitlines():
        if line.startswith("ATOM") and line[17:20] == "MET":
            line = "HETATM" + line[6:17] + "MSE" + line[20:]
            if line[12:16] == " SD ":
                line = line[:12] + "SE  " + line[16:76] + "SE" + line[78:]
        elif line.startswith("SEQRES"):
            line = line.replace("MET", "MSE")
        lines.append(line)
    path = tmp_path / "107L_mse.pdb"
    path.write_text("\n".join(lines) + "\n")
    (plain,), (mse,) = read_structure(protein_dir / "107L.pdb.gz"), read_structure(path)
    assert mse.sequence == plain.sequence and mse.seqres == plain.seqres
    assert mse.modified == {"MSE": plain.sequence.count("M")} and plain.modified == {}
    np.testing.assert_array_equal(mse.coords, plain.coords)
    np.testing.assert_array_equal(mse.seqres_index, plain.seqres_index)


def test_seqres_alignment_of_observed_residues(parsed):
    t4 = _chain(parsed, "107L.pdb.gz", "A")  # T4 lysozyme: the last two SEQRES residues are disordered
    (row,) = chain_table([t4])
    assert (row["length"], row["seqres_length"]) == (162, 164) and row["observed_fraction"] < 1
    np.testing.assert_array_equal(t4.seqres_index, np.arange(162))
    internal = 0
    for chains in parsed.values():
        for chain in chains:
            assert (chain.seqres_index >= 0).all() and (np.diff(chain.seqres_index) > 0).all()
            assert all(chain.seqres[j] == letter for letter, j in zip(chain.sequence, chain.seqres_index))
            jumps = np.diff(chain.seqres_index) > 1
            assert chain.breaks[1:][jumps].all(), "residues missing inside the chain are a break"
            internal += int(jumps.sum())
    assert internal >= 24


def test_consecutive_ca_are_3_8_angstrom_except_at_breaks(parsed):
    steps, unexplained, short = [], [], []
    for chains in parsed.values():
        for chain in chains:
            ca = chain.coords[:, 1]
            step = np.linalg.norm(np.diff(ca, axis=0), axis=-1)
            steps.append(step[~chain.breaks[1:]])
            short += [chain.sequence[i + 1] for i in np.where(~chain.breaks[1:] & (step < 2.8))[0]]
            gaps = np.diff(chain.seqres_index) > 1
            unexplained += [(chain.entry, chain.residue_ids[i + 1]) for i in np.where(chain.breaks[1:] & ~gaps)[0]]
    steps = np.concatenate(steps)
    assert np.median(steps) == pytest.approx(3.80, abs=0.01)
    assert np.mean((steps > 3.65) & (steps < 3.95)) > 0.99
    assert steps.min() > 2.5  # the short ones are cis peptides (~2.9 A), the shortest all before a proline
    assert short and set(short) == {"P"}
    # one real break that SEQRES does not show: 1DTS numbers 208 -> 213 with no residues in SEQRES between
    assert unexplained == [("1DTS", "213")]


def test_insertion_codes_glycine_and_b_factors(protein_dir, parsed):
    chain = parsed["1AYE.pdb.gz"][0]
    with_code = [rid for rid in chain.residue_ids if not rid.lstrip("-").isdigit()]
    assert len(with_code) >= 90 and all(rid[-1].isalpha() for rid in with_code)
    residue = gemmi.read_structure(str(protein_dir / "1AYE.pdb.gz"))[0]["A"][0]
    assert chain.b_factors[0] == pytest.approx(residue["CA"][0].b_iso)
    for chains in parsed.values():
        for chain in chains:
            glycine = np.array([letter == "G" for letter in chain.sequence])
            assert np.isnan(chain.coords[glycine, 3]).all()
            assert np.isfinite(chain.coords[~glycine, 3]).mean() > 0.9


def test_chain_table_rows(parsed):
    rows = chain_table(parsed["1xu1.pdb.gz"])
    assert [row["chain_id"] for row in rows] == ["A", "B", "D", "R", "S", "T"]
    assert set(rows[0]) == {
        "entry", "chain_id", "length", "seqres_length", "observed_fraction", "resolution", "method",
        "n_breaks", "nonstandard", "modified",
    }  # fmt: skip
    for row, chain in zip(rows, parsed["1xu1.pdb.gz"]):
        assert row["length"] == chain.length and row["n_breaks"] == int(chain.breaks.sum())
        assert row["nonstandard"] == sum(code not in STANDARD for code in chain.sequence)


def test_mmcif_and_gzip_paths_give_the_same_chains(protein_dir, parsed, tmp_path):
    """The PDB file converted by gemmi to mmCIF (plain and gzipped) reads back to the same chains."""
    structure = gemmi.read_structure(str(protein_dir / "1xu1.pdb.gz"))
    text = structure.make_mmcif_document().as_string()
    (tmp_path / "1xu1.cif").write_text(text)
    (tmp_path / "1xu1.mmcif.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "1xu1.ent").write_bytes(gzip.decompress((protein_dir / "1xu1.pdb.gz").read_bytes()))
    for name in ("1xu1.cif", "1xu1.mmcif.gz", "1xu1.ent"):
        for ours, theirs in zip(read_structure(tmp_path / name), parsed["1xu1.pdb.gz"], strict=True):
            assert (ours.entry, ours.chain_id, ours.sequence, ours.seqres) == (
                theirs.entry, theirs.chain_id, theirs.sequence, theirs.seqres,
            )  # fmt: skip
            np.testing.assert_allclose(ours.coords, theirs.coords, atol=1e-3)
            np.testing.assert_array_equal(ours.seqres_index, theirs.seqres_index)
            assert ours.residue_ids == theirs.residue_ids and ours.resolution == theirs.resolution


def test_only_the_first_model_is_read(protein_dir, tmp_path):
    structure = gemmi.read_structure(str(protein_dir / "1PGA.pdb.gz"))
    second = structure[0].clone()
    for residue in second["A"]:
        for atom in residue:
            atom.pos = gemmi.Position(atom.pos.x + 50, atom.pos.y, atom.pos.z)
    structure.add_model(second)
    structure.renumber_models()
    path = tmp_path / "1pga_two_models.pdb"
    structure.write_pdb(str(path))
    assert len(gemmi.read_structure(str(path))) == 2
    (chain,) = read_structure(path)
    (reference,) = read_structure(protein_dir / "1PGA.pdb.gz")
    np.testing.assert_allclose(chain.coords, reference.coords, atol=1e-3)


# ---------------------------------------------------------------------------------------------- errors

DNA = """\
ATOM      1  P    DA A   1      -0.271   9.084  -1.486  1.00 20.00           P
ATOM      2  C1'  DA A   1       1.000   9.000  -1.000  1.00 20.00           C
ATOM      3  P    DT A   2       3.271   9.084  -1.486  1.00 20.00           P
ATOM      4  C1'  DT A   2       4.000   9.000  -1.000  1.00 20.00           C
ATOM      5  P    DA A   3       6.271   9.084  -1.486  1.00 20.00           P
END
"""

NO_CA = """\
ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00 20.00           N
ATOM      2  C   ALA A   1       1.500   0.500   0.000  1.00 20.00           C
ATOM      3  O   ALA A   1       2.000   1.500   0.000  1.00 20.00           O
ATOM      4  N   GLY A   2       2.300  -0.500   0.000  1.00 20.00           N
ATOM      5  C   GLY A   2       3.800   0.000   0.000  1.00 20.00           C
END
"""


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.pdb", b"", "empty file"),
        ("garbage.pdb", b"this is not a structure\njust some words\n", "no atoms"),
        ("garbage.cif", b"data_x\nloop_\n_foo.bar\n1\n", "no model"),
        ("broken.cif", b"data_x\n_cell.length_a 'unterminated\nloop_ loop_\n", "unreadable CIF"),
        ("dna.pdb", DNA.encode(), "only nucleic acid"),
        ("no_ca.pdb", NO_CA.encode(), "no CA atoms"),
        ("binary.pdb", bytes(range(256)), "binary"),
        ("truncated.pdb.gz", gzip.compress(NO_CA.encode() * 50, mtime=0)[:60], "garbled gzip"),
        ("notgzip.pdb.gz", b"ATOM  plain text with a .gz name\n", "garbled gzip"),
        ("structure.xyz", b"3\n\nC 0 0 0\n", "unknown extension"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else "",
)
def test_bad_files_raise_structure_error_naming_file_and_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(StructureError) as caught:
        read_structure(path)
    message = str(caught.value)
    assert name in message and reason in message
    assert caught.value.reason in message and caught.value.__cause__ is None


def test_missing_file_and_pickled_error(tmp_path):
    with pytest.raises(StructureError, match="gone.pdb: file not found"):
        read_structure(tmp_path / "gone.pdb")
    error = pickle.loads(pickle.dumps(StructureError("x.pdb", "empty file")))
    assert (str(error), error.path, error.reason) == ("x.pdb: empty file", "x.pdb", "empty file")
    assert isinstance(error, ValueError)
