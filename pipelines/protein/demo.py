"""A demo set of protein entries written as real PDB and mmCIF files, for the offline profile and the tests.

The real archive is not reachable offline, and a hand-rolled "PDB-like" text would only test itself; so
the structures are built as ``gemmi.Structure`` objects and written by gemmi's own PDB and mmCIF writers
(half of them gzipped), and every branch of ``structure.read_structure`` runs on them as on a download.

What makes them plausible rather than random points:

- backbones are grown from phi/psi torsions with ideal bond lengths and angles (Engh & Huber), so
  N-CA-C geometry, trans peptides and the consecutive CA-CA distance of 3.80 A come out right; helices use
  (-57, -47), which gives the textbook 1.5 A rise, 100 degrees per residue and 2.3 A radius; strands
  (-120, 130) give the ~3.3 A zig-zag rise; loops sample Ramachandran basins;
- loops are chosen, among a few random draws, as the most compact one with no CA-CA contact under 4 A,
  so chains fold back on themselves (contacts exist for the distogram) without clashes;
- entries come in families that share a fold (the same backbone in a different crystal frame) and >= 60 %
  sequence identity (each member mutates 12 % of its family's sequence: >= 74 % measured), while families
  are drawn independently and redrawn should any cross-family pair reach 22 % (Smith-Waterman identity, the
  yardstick of the cluster split), so a 40 % identity clustering must recover the families
  (``families.json``);
- the set carries the archive quirks the reader handles: SEQRES residues missing from the model (termini
  and an internal loop), a selenomethionine written as HETATM, waters, a sulfate ligand, an alternate
  conformation whose *first* altloc is the minor one, an insertion code, a two-chain entry, and the
  EXPDTA / resolution header of an X-ray entry.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

QUIRKS = ("missing_termini", "missing_loop", "mse", "ligand", "altloc", "insertion", "two_chains")
FAMILY_SIZE = 4  # entries per family when n_entries allows
MUTATION_RATE = 0.12  # per member, from the family sequence: pairwise identity >= 1 - 2 * 0.12 = 76 %
MAX_FAMILY_IDENTITY = 0.22  # between members of different families (identity(); unrelated pairs average ~0.1)
METHOD = "X-RAY DIFFRACTION"
ALTLOC_OCCUPANCY = (0.3, 0.7)  # altloc A (written first) is the minor conformer; the reader must keep B
ALTLOC_SHIFT = 0.6  # Angstrom between the two CA positions of the altloc residue
MIN_CA_GAP = 4.0  # generation margin for non-neighbour CA-CA (the contract is > 3.0 A)

# ideal backbone geometry (Engh & Huber 1991): bond lengths in A, angles in degrees
N_CA, CA_C, C_N, C_O = 1.458, 1.525, 1.329, 1.231
ANGLE_N_CA_C, ANGLE_CA_C_N, ANGLE_C_N_CA, ANGLE_CA_C_O = 111.2, 116.2, 121.7, 120.5
HELIX, STRAND = (-57.0, -47.0), (-120.0, 130.0)
LOOP_BASINS = ((-65.0, -40.0), (-120.0, 130.0), (-70.0, 145.0), (-90.0, 0.0), (60.0, 45.0))  # last: alpha-L

# every residue in every pool, plus one extra copy of the residues each structure prefers (Chou-Fasman):
# sequences look like proteins, and the bias stays mild, since a composition skew alone would raise the
# identity of unrelated families (sum of squared frequencies: 0.05 uniform, ~0.06 here)
_ALL = "ACDEFGHIKLMNPQRSTVWY"
_COMPOSITION = {"H": _ALL + "AELKMQR", "E": _ALL + "VIYFTWC", "L": _ALL + "GNPDS"}
_THREE = {
    "A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS", "I": "ILE",
    "K": "LYS", "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN", "R": "ARG", "S": "SER",
    "T": "THR", "V": "VAL", "W": "TRP", "Y": "TYR",
}  # fmt: skip


@dataclass
class _Family:
    name: str
    ss: str  # per residue H / E / L
    sequence: str  # the family's one-letter sequence, members mutate it
    backbone: np.ndarray  # (L, 5, 3): N, CA, C, O, CB in the family frame (CB ideal even for glycine)
    members: list[str]  # one mutated sequence per entry of the family, in entry order


def write_demo(out: Path, n_entries: int = 24, seed: int = 0, formats=("pdb", "cif")) -> list[Path]:
    """Write ``n_entries`` structures into ``out`` (plus ``families.json``: {entry: family}); the paths,
    in entry order. Deterministic for a seed; entry i is in format formats[i % len(formats)], gzipped
    every other round, so each format occurs plain and gzipped."""
    if n_entries < 1 or not formats or set(formats) - {"pdb", "cif"}:
        raise ValueError(f"write_demo: need n_entries >= 1 and formats among pdb/cif, got {n_entries}, {formats}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_families = max(1, math.ceil(n_entries / FAMILY_SIZE))
    families: list[_Family] = []
    for k in range(n_families):
        n_members = len(range(k, n_entries, n_families))  # entry i belongs to family i % n_families
        families.append(_make_family(f"F{k:02d}", n_members, rng, families))
    quirks = entry_quirks(n_entries)
    paths, membership = [], {}
    for index in range(n_entries):
        name = entry_name(index)
        family = families[index % n_families]
        structure = _make_entry(name, family, family.members[index // n_families], quirks[index], rng)
        fmt = formats[index % len(formats)]
        gz = (index // len(formats)) % 2 == 1
        paths.append(_write(structure, out / f"{name}.{fmt}{'.gz' if gz else ''}", fmt, gz))
        membership[name] = family.name
    (out / "families.json").write_text(json.dumps(membership, indent=1, sort_keys=True) + "\n")
    return paths


def entry_name(index: int) -> str:
    """A 4-character PDB-style id (digit first, like the archive's), unique per index below 1000."""
    return f"9D{index:02d}" if index < 100 else f"8{index:03d}"


def entry_quirks(n_entries: int) -> list[frozenset[str]]:
    """Which quirks entry i carries: QUIRKS dealt round-robin, so every quirk occurs in any set (with
    fewer entries than quirks, entries carry several); all entries have waters and an X-ray header."""
    dealt: list[set[str]] = [set() for _ in range(n_entries)]
    for k in range(max(n_entries, len(QUIRKS))):
        dealt[k % n_entries].add(QUIRKS[k % len(QUIRKS)])
    return [frozenset(q) for q in dealt]


# ---------------------------------------------------------------------------------------------- folds


def _make_family(name: str, n_members: int, rng: np.random.Generator, others: list[_Family]) -> _Family:
    for _ in range(50):  # a dead end (no clash-free loop) is rare; start the fold over
        ss = _secondary_structure(rng)
        torsions = _torsions(ss, rng)
        built = _grow(ss, torsions, rng)
        if built is None:
            continue
        for _ in range(20):  # unrelated families must look unrelated: redraw the (rare) chance look-alike
            sequence = _family_sequence(ss, torsions, rng)
            members = [_mutate(sequence, ss, rng) for _ in range(n_members)]
            if _unrelated(members, [m for other in others for m in other.members]):
                break
        return _Family(name, ss, sequence, _full_backbone(*built, torsions[:, 1]), members)
    raise RuntimeError("demo: could not grow a clash-free fold")  # not reached with sane constants


def _unrelated(members: list[str], others: list[str]) -> bool:
    return all(identity(a, b) < MAX_FAMILY_IDENTITY for a in members for b in others)


def identity(a: str, b: str) -> float:
    """Identical residues over the shorter sequence in the best local alignment (Smith-Waterman, BLOSUM62,
    gaps -10/-1): the yardstick of the shared set's holdout split and of the cluster split's leak check.
    Unrelated protein-like sequences score 5-25 % by it (local alignments find similar stretches)."""
    import biotite.sequence as bseq  # lazily: only the demo generator and its tests align sequences
    import biotite.sequence.align as balign

    matrix = balign.SubstitutionMatrix.std_protein_matrix()
    alignment = balign.align_optimal(
        bseq.ProteinSequence(a), bseq.ProteinSequence(b), matrix, gap_penalty=(-10, -1), local=True, max_number=1
    )[0]
    return float(balign.get_sequence_identity(alignment, mode="shortest"))


def _secondary_structure(rng: np.random.Generator) -> str:
    """Loop, then alternating helices (10-18) and strands (5-9) joined by loops (3-6), up to ~70-130."""
    target = int(rng.integers(70, 131))
    ss = "L" * int(rng.integers(2, 5))
    while len(ss) < target:
        element = "H" * int(rng.integers(10, 19)) if rng.random() < 0.55 else "E" * int(rng.integers(5, 10))
        ss += element + "L" * int(rng.integers(3, 7))
    return ss


def _torsions(ss: str, rng: np.random.Generator) -> np.ndarray:
    """(L, 2) phi/psi in degrees: ideal helix/strand values with a few degrees of noise; loops are
    drawn per residue from Ramachandran basins in _grow."""
    torsions = np.zeros((len(ss), 2))
    for i, kind in enumerate(ss):
        base = HELIX if kind == "H" else STRAND if kind == "E" else LOOP_BASINS[0]
        torsions[i] = np.add(base, rng.normal(0, 4, 2))
    return torsions


def _grow(ss: str, torsions: np.ndarray, rng: np.random.Generator, tries: int = 24):
    """Grow the chain element by element; each loop (with the element after it) is drawn ``tries``
    times and the most compact clash-free draw kept. Returns N, CA, C lists, or None at a dead end."""
    n, ca, c = [(0.0, 0.0, 0.0)], [(N_CA, 0.0, 0.0)], []
    c.append(_place((0.0, 1.0, 0.0), n[0], ca[0], CA_C, ANGLE_N_CA_C, torsions[0, 0]))
    starts = [i for i in range(1, len(ss)) if ss[i] == "L" and ss[i - 1] != "L"] + [len(ss)]
    segments = [(1, starts[0])] + list(zip(starts[:-1], starts[1:]))
    for lo, hi in segments:
        if lo >= hi:
            continue
        best = None
        for _ in range(tries):
            trial = torsions[lo:hi].copy()
            for j in range(hi - lo):
                if ss[lo + j] == "L":
                    trial[j] = np.add(LOOP_BASINS[rng.integers(len(LOOP_BASINS))], rng.normal(0, 10, 2))
            atoms = _extend(n[-1], ca[-1], c[-1], torsions[lo - 1, 1], trial)
            new_ca = np.array([atom[1] for atom in atoms])
            if _clashes(np.array(ca), new_ca):
                continue
            score = _compactness(np.array(ca), new_ca)
            if best is None or score < best[0]:
                best = (score, trial, atoms)
        if best is None:
            return None
        torsions[lo:hi] = best[1]
        for atom_n, atom_ca, atom_c in best[2]:
            n.append(atom_n)
            ca.append(atom_ca)
            c.append(atom_c)
    return np.array(n), np.array(ca), np.array(c)


def _extend(n, ca, c, psi_before: float, torsions: np.ndarray) -> list[tuple]:
    """Backbone atoms of the next residues (NeRF), from the last N/CA/C, that residue's psi, omega 180."""
    atoms, psi = [], psi_before
    for phi, next_psi in torsions:
        n_new = _place(n, ca, c, C_N, ANGLE_CA_C_N, psi)
        ca_new = _place(ca, c, n_new, N_CA, ANGLE_C_N_CA, 180.0)
        c_new = _place(c, n_new, ca_new, CA_C, ANGLE_N_CA_C, phi)
        atoms.append((n_new, ca_new, c_new))
        n, ca, c, psi = n_new, ca_new, c_new, next_psi
    return atoms


def _place(a, b, c, bond: float, angle: float, torsion: float) -> tuple[float, float, float]:
    """Natural extension reference frame: the atom d with |cd| = bond, angle bcd and dihedral abcd (deg).
    Plain floats: this runs ~10^4 times per demo set and numpy's per-call overhead dominates at size 3."""
    angle, torsion = math.radians(angle), math.radians(torsion)
    bc = _unit(_sub(c, b))
    normal = _unit(_cross(_sub(b, a), bc))
    m = _cross(normal, bc)
    d = (
        -bond * math.cos(angle),
        bond * math.sin(angle) * math.cos(torsion),
        bond * math.sin(angle) * math.sin(torsion),
    )
    return tuple(c[k] + d[0] * bc[k] + d[1] * m[k] + d[2] * normal[k] for k in range(3))


def _sub(u, v):
    return (u[0] - v[0], u[1] - v[1], u[2] - v[2])


def _cross(u, v):
    return (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])


def _unit(u):
    norm = math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
    return (u[0] / norm, u[1] / norm, u[2] / norm)


def _clashes(old_ca: np.ndarray, new_ca: np.ndarray) -> bool:
    """Any new CA closer than MIN_CA_GAP to a non-neighbour (old ones end where new ones begin)."""
    across = np.linalg.norm(old_ca[:, None] - new_ca[None], axis=-1)
    across[-1, 0] = np.inf  # old[-1] is bonded to new[0]
    if across.min() < MIN_CA_GAP:
        return True
    within = np.linalg.norm(new_ca[:, None] - new_ca[None], axis=-1)
    near = np.abs(np.subtract.outer(np.arange(len(new_ca)), np.arange(len(new_ca)))) < 2
    return bool((within[~near] < MIN_CA_GAP).any()) if (~near).any() else False


def _compactness(old_ca: np.ndarray, new_ca: np.ndarray) -> float:
    """Lower is more protein-like: the radius of gyration, minus a bonus per CA pair between the new
    segment and the chain before it within 10 A (packing against the existing core, not just curling)."""
    points = np.vstack([old_ca, new_ca])
    radius = float(np.sqrt(((points - points.mean(0)) ** 2).sum(-1).mean()))
    packed = int((np.linalg.norm(old_ca[:-4, None] - new_ca[None], axis=-1) < 10.0).sum()) if len(old_ca) > 4 else 0
    return radius - 0.05 * packed


def _full_backbone(n: np.ndarray, ca: np.ndarray, c: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """(L, 5, 3) N, CA, C, O, CB: O trans to the next N in the peptide plane, CB from the ideal
    tetrahedral construction used by trRosetta/AlphaFold (Engh & Huber angles)."""
    o = []
    for i in range(len(ca)):
        if i + 1 < len(ca):  # O anti to N(i+1) about CA-C
            o.append(_place(tuple(n[i + 1]), tuple(ca[i]), tuple(c[i]), C_O, ANGLE_CA_C_O, 180.0))
        else:  # last residue: from its own psi, anti to where the next N would be
            o.append(_place(tuple(n[i]), tuple(ca[i]), tuple(c[i]), C_O, ANGLE_CA_C_O, psi[i] + 180.0))
    b, cc = ca - n, c - ca
    cb = -0.58273431 * np.cross(b, cc) + 0.56802827 * b - 0.54067466 * cc + ca
    return np.stack([n, ca, c, np.array(o), cb], axis=1)


def _family_sequence(ss: str, torsions: np.ndarray, rng: np.random.Generator) -> str:
    letters = [_draw(kind, rng) for kind in ss]
    for i, (phi, _) in enumerate(torsions):
        if phi > 0:  # left-handed residues are glycines in real proteins
            letters[i] = "G"
    return "".join(letters)


def _draw(kind: str, rng: np.random.Generator) -> str:
    pool = _COMPOSITION[kind]
    return pool[rng.integers(len(pool))]


# ---------------------------------------------------------------------------------------------- entries


def _make_entry(
    name: str, family: _Family, sequence: str, quirks: frozenset[str], rng: np.random.Generator
) -> gemmi.Structure:
    names = [_THREE[letter] for letter in sequence]
    if "mse" in quirks:  # a selenomethionine (HETATM in PDB files) in the first helix
        names[family.ss.index("H") + 2] = "MSE"
    frame = _random_frame(rng)
    backbone = family.backbone @ frame[0].T + frame[1]
    observed = _observed(family, backbone, quirks, rng)
    chains, seqres = [_protein_chain("A", names, backbone, observed, quirks, rng)], {"A": names}
    protein = [backbone[observed].reshape(-1, 3)]  # every atom written, for placing waters and ligand
    if "two_chains" in quirks:  # a homodimer: chain B, fully observed, packed beside A
        other = _beside(backbone, rng)
        chains.append(_protein_chain("B", names, other, list(range(len(names))), frozenset(), rng))
        seqres["B"] = names
        protein.append(other.reshape(-1, 3))
    protein = np.vstack(protein)
    chain_a = chains[0]
    next_num = len(names) + 100  # ligands and waters numbered after the polymer, as in deposited files
    if "ligand" in quirks:
        chain_a.add_residue(_sulfate(protein, next_num, rng))
        next_num += 1
    for residue in _waters(protein, next_num, rng):
        chain_a.add_residue(residue)
    return _structure(name, chains, seqres, protein, rng)


def _mutate(sequence: str, ss: str, rng: np.random.Generator) -> str:
    letters = list(sequence)
    positions = rng.choice(len(letters), size=int(round(MUTATION_RATE * len(letters))), replace=False)
    for i in positions:
        options = [x for x in _COMPOSITION[ss[i]] if x != letters[i]]
        letters[i] = options[rng.integers(len(options))]
    return "".join(letters)


def _random_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random rotation (QR of a Gaussian matrix, det +1) and a translation into a crystal-like box."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q, rng.uniform(10.0, 40.0, 3)


def _observed(family: _Family, backbone: np.ndarray, quirks: frozenset[str], rng: np.random.Generator) -> list[int]:
    """Indices (into SEQRES) of the residues present in the model."""
    length = len(family.ss)
    missing: set[int] = set()
    if "missing_termini" in quirks:  # disordered termini: in SEQRES, not in the model
        missing |= set(range(int(rng.integers(2, 5)))) | set(range(length - int(rng.integers(1, 4)), length))
    if "missing_loop" in quirks:
        missing |= set(_disordered_loop(family.ss, backbone))
    return [i for i in range(length) if i not in missing]


def _disordered_loop(ss: str, backbone: np.ndarray) -> list[int]:
    """Three residues from the middle of an internal loop whose flanking CAs are > 6 A apart, so the gap
    is a real chain break (CA-CA > 4.2 A) whichever way the loop was grown."""
    for i in range(4, len(ss) - 6):
        if ss[i : i + 3] == "LLL" and np.linalg.norm(backbone[i - 1, 1] - backbone[i + 3, 1]) > 6.0:
            return [i, i + 1, i + 2]
    return [len(ss) // 2, len(ss) // 2 + 1, len(ss) // 2 + 2]  # no loop qualifies: a gap in any case


def _protein_chain(chain_id, names, backbone, observed, quirks, rng) -> gemmi.Chain:
    chain = gemmi.Chain(chain_id)
    insertion_at = observed[len(observed) // 2] if "insertion" in quirks else None
    altloc_at = observed[len(observed) // 3] if "altloc" in quirks else None
    b_base = float(rng.uniform(12.0, 25.0))
    shift = 0
    for index in observed:
        if index == insertion_at:
            shift = 1  # this residue is "<n>A" after residue n; later residues keep their own numbers - 1
        icode = "A" if index == insertion_at else " "
        residue = _residue(names[index], gemmi.SeqId(index + 1 - shift, icode), "H" if names[index] == "MSE" else "A")
        b_iso = b_base + 8.0 * float(rng.random())
        atoms = _residue_atoms(names[index], backbone[index])
        for atom_name, element, position in atoms:
            if index == altloc_at and atom_name in ("CA", "CB"):
                _add_altloc_pair(residue, atom_name, element, position, b_iso, rng)
            else:
                residue.add_atom(_atom(atom_name, element, position, b_iso))
        chain.add_residue(residue)
    return chain


def _residue_atoms(name: str, backbone: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    atoms = [("N", "N", backbone[0]), ("CA", "C", backbone[1]), ("C", "C", backbone[2]), ("O", "O", backbone[3])]
    if name != "GLY":
        atoms.append(("CB", "C", backbone[4]))
    if name == "MSE":  # the selenium side chain, extended (chi 180)
        n, ca, cb = (tuple(float(x) for x in backbone[k]) for k in (0, 1, 4))
        cg = _place(n, ca, cb, 1.52, 114.0, 180.0)
        se = _place(ca, cb, cg, 1.95, 112.7, 180.0)
        ce = _place(cb, cg, se, 1.95, 98.9, 180.0)
        atoms += [("CG", "C", np.array(cg)), ("SE", "Se", np.array(se)), ("CE", "C", np.array(ce))]
    return atoms


def _add_altloc_pair(residue, atom_name, element, position, b_iso, rng) -> None:
    """Altloc A (minor, written first, displaced) then B (major, at the ideal position)."""
    direction = rng.normal(size=3)
    displaced = position + ALTLOC_SHIFT * direction / np.linalg.norm(direction)
    for altloc, occupancy, where in (("A", ALTLOC_OCCUPANCY[0], displaced), ("B", ALTLOC_OCCUPANCY[1], position)):
        atom = _atom(atom_name, element, where, b_iso, occupancy)
        atom.altloc = altloc
        residue.add_atom(atom)


def _beside(backbone: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rotated copy of the chain moved along a random direction until it no longer clashes (CA > 4 A)."""
    rotation, _ = _random_frame(rng)
    center = backbone[:, 1].mean(0)
    copy = (backbone - center) @ rotation.T + center
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    for step in np.arange(5.0, 200.0, 1.0):
        moved = copy + step * direction
        if np.linalg.norm(backbone[:, None, 1] - moved[None, :, 1], axis=-1).min() > MIN_CA_GAP + 1.0:
            return moved
    return copy + 200.0 * direction


def _surface_points(protein: np.ndarray, count: int, min_gap: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Points 3.5-6 A out from surface atoms, >= min_gap from every protein atom and from each other."""
    center = protein.mean(0)
    points: list[np.ndarray] = []
    for _ in range(count * 30):
        if len(points) == count:
            break
        anchor = protein[rng.integers(len(protein))]
        outward = anchor - center + rng.normal(0, 2.0, 3)
        candidate = anchor + rng.uniform(3.5, 6.0) * outward / np.linalg.norm(outward)
        far_from_protein = np.linalg.norm(protein - candidate, axis=-1).min() >= min_gap
        if far_from_protein and all(np.linalg.norm(candidate - p) >= 2.8 for p in points):
            points.append(candidate)
    return points


def _sulfate(protein: np.ndarray, num: int, rng: np.random.Generator) -> gemmi.Residue:
    residue = _residue("SO4", gemmi.SeqId(num, " "), "H", gemmi.EntityType.NonPolymer)
    (center,) = _surface_points(protein, 1, 4.0, rng) or [protein.max(0) + 5.0]
    residue.add_atom(_atom("S", "S", center, 30.0))
    tetrahedron = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3)
    for k, vertex in enumerate(tetrahedron):
        residue.add_atom(_atom(f"O{k + 1}", "O", center + 1.47 * vertex, 32.0))
    return residue


def _waters(protein: np.ndarray, first_num: int, rng: np.random.Generator) -> list[gemmi.Residue]:
    waters = []
    for k, position in enumerate(_surface_points(protein, int(rng.integers(8, 16)), 2.8, rng)):
        residue = _residue("HOH", gemmi.SeqId(first_num + k, " "), "H", gemmi.EntityType.Water)
        residue.add_atom(_atom("O", "O", position, float(rng.uniform(25.0, 45.0))))
        waters.append(residue)
    return waters


def _residue(name: str, seqid: gemmi.SeqId, het_flag: str, kind=gemmi.EntityType.Polymer) -> gemmi.Residue:
    residue = gemmi.Residue()
    residue.name = name
    residue.seqid = seqid
    residue.het_flag = het_flag
    residue.entity_type = kind
    return residue


def _atom(name: str, element: str, position, b_iso: float, occupancy: float = 1.0) -> gemmi.Atom:
    atom = gemmi.Atom()
    atom.name = name
    atom.element = gemmi.Element(element)
    # rounded as in the archive (PDB columns hold 3 and 2 decimals), so the PDB and mmCIF copies agree
    atom.pos = gemmi.Position(*(round(float(x), 3) for x in position))
    atom.occ = round(occupancy, 2)
    atom.b_iso = round(b_iso, 2)
    return atom


def _structure(name: str, chains, seqres: dict[str, list[str]], protein: np.ndarray, rng) -> gemmi.Structure:
    """The entry with its headers: HEADER/_entry.id, EXPDTA, resolution, a P1 cell around the atoms,
    SEQRES (full, including unobserved residues) and label_seq aligned to it."""
    structure = gemmi.Structure()
    structure.name = name
    structure.info["_entry.id"] = name
    structure.info["_struct_keywords.pdbx_keywords"] = "DE NOVO PROTEIN"
    structure.info["_pdbx_database_status.recvd_initial_deposition_date"] = "2024-01-01"
    structure.info["_struct.title"] = f"SCIFOLIO DEMO ENTRY {name}"
    model = gemmi.Model(1)
    for chain in chains:
        model.add_chain(chain)
    structure.add_model(model)  # copies: use structure[0] from here on
    extent = protein.max(0) - protein.min(0) + 20.0
    structure.cell = gemmi.UnitCell(*(round(float(x), 3) for x in extent), 90.0, 90.0, 90.0)
    structure.spacegroup_hm = "P 1"
    resolution = round(float(rng.uniform(1.2, 2.8)), 2)
    structure.resolution = resolution
    experiment = gemmi.ExperimentInfo()
    experiment.method = METHOD
    structure.meta.experiments = [experiment]
    refinement = gemmi.RefinementInfo()
    refinement.resolution_high = resolution
    structure.meta.refinement = [refinement]
    structure.setup_entities()
    for entity in structure.entities:
        if entity.entity_type == gemmi.EntityType.Polymer:
            chain_id = _chain_of(structure[0], entity.subchains[0])
            entity.full_sequence = seqres[chain_id]
    structure.assign_label_seq_id(True)
    return structure


def _chain_of(model: gemmi.Model, subchain: str) -> str:
    for chain in model:
        if any(residue.subchain == subchain for residue in chain):
            return chain.name
    raise KeyError(subchain)


def _write(structure: gemmi.Structure, path: Path, fmt: str, gz: bool) -> Path:
    text = structure.make_pdb_string() if fmt == "pdb" else structure.make_mmcif_document().as_string()
    data = text.encode()
    path.write_bytes(gzip.compress(data, 9, mtime=0) if gz else data)  # mtime=0: byte-identical reruns
    return path
