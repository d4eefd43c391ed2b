"""Read PDB / mmCIF entries into per-chain residue arrays, the input of every later protein stage.

The graphs, distograms and contact maps built downstream need, per protein chain, one row per observed
residue: its one-letter code, the N/CA/C/CB positions, where the backbone is broken, and where the residue
sits in the deposited (SEQRES) sequence. Getting that row right is mostly about the archive's quirks, so
parsing is left to gemmi (the crystallographers' library, which knows the PDB and mmCIF dialects, the
chemical-component table and the SEQRES alignment) and this module only makes the choices gemmi leaves open:

- first model only: NMR/ensemble files carry 10-40 models of the same chains; model 1 is the deposited
  representative, and taking all would duplicate every chain in the training set;
- alternative conformations: the conformer with the highest occupancy is kept (gemmi's
  ``remove_alternative_conformations`` keeps the first altloc, "A", which in real entries is sometimes the
  minor one, e.g. 3CSS GLU 182 A=0.25/B=0.75); the majority conformer is what the density supports best;
- modified amino acids (MSE, TPO, PCA, ...) stay in the chain under their parent's letter: they are part of
  the backbone, and dropping them would put a fake chain break in the middle of a helix;
- waters, ligands and hydrogens go: the residue graph is over heavy backbone atoms of the polymer, and
  hydrogens are present only in some entries (ultra-high resolution, neutron), so keeping them would make
  inputs depend on how the entry was refined;
- residues without CA are dropped: CA is the node position of the residue graph.

Every failure is a ``StructureError`` naming the file and the reason, so a pipeline over thousands of
downloaded entries can log and skip a bad one instead of dying on a gemmi traceback.
"""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

BACKBONE = ("N", "CA", "C", "CB")  # the order of the atom axis of Chain.coords
STANDARD = frozenset("ACDEFGHIKLMNPQRSTVWY")
PEPTIDE_BOND_MAX = 2.0  # C(i-1)-N(i) is 1.33 A when bonded; > 2 A means no peptide bond
CA_CA_MAX = 4.2  # trans 3.80 A, cis 2.9 A; a longer step means residues are missing in between
_FORMATS = {".pdb": "pdb", ".ent": "pdb", ".cif": "cif", ".mmcif": "cif"}
_PEPTIDE = (gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD)
_NUCLEIC = (gemmi.PolymerType.Dna, gemmi.PolymerType.Rna, gemmi.PolymerType.DnaRnaHybrid)


class StructureError(ValueError):
    """A file that yields no usable protein chain; the message is "<file>: <reason>"."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # picklable, so it survives a multiprocessing pool
        return type(self), (self.path, self.reason)


# eq=False: the arrays make field-wise == ambiguous (and unhashable); chains are compared by identity.
@dataclass(frozen=True, eq=False)
class Chain:
    """One protein chain: per observed residue (L of them) its letter, backbone atoms and numbering."""

    entry: str  # PDB id from the header (_entry.id), else the file stem; upper-case
    chain_id: str  # author chain id
    sequence: str  # one-letter codes of the observed residues, modified ones as their parent (MSE -> M)
    seqres: str  # full deposited sequence (SEQRES / entity_poly_seq), '' if the file has none
    seqres_index: np.ndarray  # int64 (L,): index of each observed residue in seqres, -1 where unaligned
    coords: np.ndarray  # float32 (L, 4, 3): N, CA, C, CB; NaN for a missing atom (and glycine's CB)
    residue_ids: list[str]  # author numbering with insertion code: "27", "27A"
    breaks: np.ndarray  # bool (L,): residue i is not bonded to i-1 (breaks[0] is False: nothing before it)
    b_factors: np.ndarray  # float32 (L,): CA B-factor (pLDDT in AlphaFold files)
    resolution: float | None  # Angstrom; None for NMR / unknown
    method: str  # EXPDTA / _exptl.method, e.g. "X-RAY DIFFRACTION"; '' if absent
    modified: dict[str, int]  # modified residues mapped to a parent, counted by name: {"MSE": 3}

    @property
    def length(self) -> int:
        return len(self.sequence)

    @property
    def observed_fraction(self) -> float:
        """Observed residues over the deposited (SEQRES) sequence; 1.0 when the file has no SEQRES."""
        return self.length / len(self.seqres) if self.seqres else 1.0


def read_structure(path: str | Path, *, min_length: int = 20) -> list[Chain]:
    """Protein chains (first model) of a .pdb/.ent/.cif/.mmcif file, optionally gzipped.

    Chains with fewer than ``min_length`` CA-bearing residues are left out (short peptides bound to a
    protein would be noise as graphs of their own); a file whose protein chains are all that short gives
    ``[]``, while a file that cannot give protein at all raises ``StructureError``.
    """
    path = Path(path)
    structure = _load(path)
    model = _first_model(path, structure)
    kinds = Counter()
    chains, any_ca = [], False
    for gchain in model:
        kind = _polymer_kind(gchain)
        kinds[kind] += 1
        if kind != "protein":
            continue
        residues = [res for res in gchain if res.find_atom("CA", "*") is not None]
        any_ca = any_ca or bool(residues)
        if len(residues) >= min_length:
            chains.append(_chain(path, structure, gchain, residues))
    if not kinds["protein"]:
        reason = "only nucleic acid, no protein chain" if kinds["nucleic"] else "no protein chain"
        raise StructureError(path, reason)
    if not any_ca:
        raise StructureError(path, "no CA atoms in any protein chain")
    return chains


def chain_table(chains: list[Chain]) -> list[dict]:
    """One summary row per chain, for the data report and for filtering on coverage and quality."""
    rows = []
    for chain in chains:
        seqres_length = len(chain.seqres)
        rows.append(
            {
                "entry": chain.entry,
                "chain_id": chain.chain_id,
                "length": chain.length,
                "seqres_length": seqres_length,
                "observed_fraction": chain.observed_fraction,
                "resolution": chain.resolution,
                "method": chain.method,
                "n_breaks": int(chain.breaks.sum()),
                "nonstandard": sum(code not in STANDARD for code in chain.sequence),
                "modified": dict(chain.modified),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------- loading


def _load(path: Path) -> gemmi.Structure:
    """The gemmi Structure of the file, with entities and label_seq set up; StructureError if unreadable."""
    fmt = _format(path)
    text = _text(path)
    # gemmi raises RuntimeError/ValueError (and others from its C++ core) on malformed input; any of them
    # means "this file is broken", which the caller must see as a StructureError naming the file.
    try:
        if fmt == "pdb":
            structure = gemmi.read_pdb_string(text)
        else:
            document = gemmi.cif.read_string(text)
            if len(document) == 0:
                raise StructureError(path, "mmCIF file has no data block")
            structure = gemmi.make_structure_from_block(document[0])
        structure.setup_entities()  # entity types + polymer types, from SEQRES or guessed from residues
        structure.assign_label_seq_id(False)  # aligns SEQRES to the model (kept as is when the mmCIF has it)
    except StructureError:
        raise
    except Exception as exc:
        raise StructureError(path, f"unreadable {fmt.upper()} file ({type(exc).__name__}: {exc})") from None
    return structure


def _format(path: Path) -> str:
    suffixes = path.suffixes[-2:] if path.suffix.lower() == ".gz" else path.suffixes[-1:]
    ext = suffixes[0].lower() if suffixes else ""
    if ext not in _FORMATS:
        raise StructureError(path, f"unknown extension {''.join(suffixes)!r} (expected .pdb .ent .cif .mmcif [.gz])")
    return _FORMATS[ext]


def _text(path: Path) -> str:
    """The decompressed text. Python's gzip, not gemmi's, so that a truncated download is an error:
    gemmi silently parses what it could inflate and returns a structure missing its tail."""
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gz":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise StructureError(path, "file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise StructureError(path, f"garbled gzip ({exc})") from None
    if not raw.strip():
        raise StructureError(path, "empty file")
    if b"\0" in raw:
        raise StructureError(path, "binary data, not a PDB/mmCIF text file")
    return raw.decode("utf-8", errors="replace")


def _first_model(path: Path, structure: gemmi.Structure) -> gemmi.Model:
    """Model 1 (see the module docstring), cleaned: no other models, hydrogens, waters, ligands, altlocs."""
    if len(structure) == 0:
        raise StructureError(path, "no model (no ATOM/HETATM records: garbled or not a coordinate file)")
    for index in range(len(structure) - 1, 0, -1):
        del structure[index]
    model = structure[0]
    if model.count_atom_sites() == 0:
        raise StructureError(path, "no atoms (garbled or not a coordinate file)")
    structure.remove_hydrogens()
    # Removes residues whose entity is non-polymer or water; a HETATM MSE inside the chain belongs to the
    # polymer entity (gemmi assigns it by position in the chain), so it stays.
    structure.remove_ligands_and_waters()
    for gchain in model:
        for residue in gchain:
            _keep_highest_occupancy(residue)
        _drop_microheterogeneity(gchain)
    structure.remove_empty_chains()
    return model


def _keep_highest_occupancy(residue: gemmi.Residue) -> None:
    """Keep one conformer: the altloc with the highest mean occupancy (ties: the first letter, the PDB
    convention). An atom lacking that altloc keeps its own best copy, so no atom is lost."""
    occupancies: dict[str, list[float]] = {}
    for atom in residue:
        if atom.altloc != "\0":
            occupancies.setdefault(atom.altloc, []).append(atom.occ)
    if not occupancies:
        return
    best = max(sorted(occupancies), key=lambda alt: np.mean(occupancies[alt]))
    chosen: dict[str, int] = {}  # atom name -> index of the copy kept
    for index, atom in enumerate(residue):
        current = chosen.get(atom.name)
        if current is None or _rank(atom, best) > _rank(residue[current], best):
            chosen[atom.name] = index
    keep = set(chosen.values())
    for index in range(len(residue) - 1, -1, -1):
        if index not in keep:
            del residue[index]
    for atom in residue:
        atom.altloc = "\0"


def _rank(atom: gemmi.Atom, best: str) -> tuple[int, float]:
    return (atom.altloc == best, atom.altloc == "\0", atom.occ)


def _drop_microheterogeneity(gchain: gemmi.Chain) -> None:
    """Two residues at one position (a point-mutation mixture in the crystal): keep the more occupied one."""
    for index in range(len(gchain) - 1, 0, -1):
        here, before = gchain[index], gchain[index - 1]
        if here.seqid == before.seqid:
            drop = index if _mean_occupancy(here) <= _mean_occupancy(before) else index - 1
            del gchain[drop]


def _mean_occupancy(residue: gemmi.Residue) -> float:
    return float(np.mean([atom.occ for atom in residue])) if len(residue) else 0.0


def _polymer_kind(gchain: gemmi.Chain) -> str:
    """ "protein", "nucleic" or "other", from the residues present (gemmi's check, then a name count for
    chains it cannot type, e.g. a protein with no CA atoms)."""
    polymer = gchain.get_polymer()
    ptype = polymer.check_polymer_type() if polymer.length() else gemmi.PolymerType.Unknown
    if ptype in _PEPTIDE:
        return "protein"
    if ptype in _NUCLEIC:
        return "nucleic"
    infos = [gemmi.find_tabulated_residue(residue.name) for residue in gchain]
    n_amino = sum(info is not None and info.is_amino_acid() for info in infos)
    n_nucleic = sum(info is not None and info.is_nucleic_acid() for info in infos)
    if n_amino and n_amino >= n_nucleic:
        return "protein"
    return "nucleic" if n_nucleic else "other"


# ---------------------------------------------------------------------------------------------- chains


def _chain(path: Path, structure: gemmi.Structure, gchain: gemmi.Chain, residues: list[gemmi.Residue]) -> Chain:
    letters, modified = [], Counter()
    for residue in residues:
        letter, is_modified = one_letter(residue.name)
        letters.append(letter)
        if is_modified:
            modified[residue.name] += 1
    seqres = _seqres(structure, gchain)
    coords = _backbone(residues, letters)
    return Chain(
        entry=_entry_id(path, structure),
        chain_id=gchain.name,
        sequence="".join(letters),
        seqres=seqres,
        seqres_index=_seqres_index(residues, seqres),
        coords=coords,
        residue_ids=[f"{res.seqid.num}{res.seqid.icode.strip()}" for res in residues],
        breaks=chain_breaks(coords),
        b_factors=np.array([res.find_atom("CA", "*").b_iso for res in residues], dtype=np.float32),
        resolution=structure.resolution if structure.resolution > 0 else None,
        method=_info(structure, "_exptl.method"),
        modified=dict(modified),
    )


def one_letter(name: str) -> tuple[str, bool]:
    """(letter, mapped): the residue's one-letter code, a modified residue as its parent (gemmi's table
    writes the parent in lower case: MSE -> 'm'), 'X' for anything unknown; mapped says a parent was used."""
    info = gemmi.find_tabulated_residue(name.split(",")[0])  # "ALA,GLY": entity_poly_seq microheterogeneity
    if info is None or not info.is_amino_acid() or not info.one_letter_code.strip():
        return "X", False
    code = info.one_letter_code
    return code.upper(), code.islower()


def _seqres(structure: gemmi.Structure, gchain: gemmi.Chain) -> str:
    polymer = gchain.get_polymer()
    entity = structure.get_entity_of(polymer) if polymer.length() else None
    if entity is None or not entity.full_sequence:
        return ""
    return "".join(one_letter(name)[0] for name in entity.full_sequence)


def _seqres_index(residues: list[gemmi.Residue], seqres: str) -> np.ndarray:
    """label_seq - 1: gemmi's assign_label_seq_id aligned SEQRES to the model (align_sequence_to_polymer);
    mmCIF files carry label_seq_id themselves. -1 where a residue is not in SEQRES (or there is none)."""
    if not seqres:
        return np.full(len(residues), -1, dtype=np.int64)
    index = [
        res.label_seq - 1 if res.label_seq is not None and 0 < res.label_seq <= len(seqres) else -1 for res in residues
    ]
    return np.array(index, dtype=np.int64)


def _backbone(residues: list[gemmi.Residue], letters: list[str]) -> np.ndarray:
    coords = np.full((len(residues), len(BACKBONE), 3), np.nan, dtype=np.float32)
    for i, residue in enumerate(residues):
        for j, name in enumerate(BACKBONE):
            if name == "CB" and letters[i] == "G":
                continue  # glycine has no CB, whatever a model might contain
            atom = residue.find_atom(name, "*")
            if atom is not None:
                coords[i, j] = (atom.pos.x, atom.pos.y, atom.pos.z)
    return coords


def chain_breaks(coords: np.ndarray) -> np.ndarray:
    """True where residue i is not bonded to i-1: C(i-1)-N(i) > 2.0 A, or CA-CA > 4.2 A (the only test when
    N or C is missing). NaN distances compare False, so a missing atom alone is not a break."""
    breaks = np.zeros(len(coords), dtype=np.bool_)
    if len(coords) < 2:
        return breaks
    with np.errstate(invalid="ignore"):
        peptide = np.linalg.norm(coords[1:, 0] - coords[:-1, 2], axis=-1)
        ca_step = np.linalg.norm(coords[1:, 1] - coords[:-1, 1], axis=-1)
        breaks[1:] = (peptide > PEPTIDE_BOND_MAX) | (ca_step > CA_CA_MAX)
    return breaks


def _entry_id(path: Path, structure: gemmi.Structure) -> str:
    entry = _info(structure, "_entry.id")
    if not entry:
        entry = path.name.split(".")[0]
    return entry.upper()


def _info(structure: gemmi.Structure, key: str) -> str:
    return structure.info[key] if key in structure.info else ""
