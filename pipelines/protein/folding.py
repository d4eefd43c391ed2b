"""3D conformation from predicted distances: fold a Cα trace to fit a distogram, trRosetta-style but small.

A contact model gives, per chain, distogram probabilities ``(L, L, 37)`` over Cβ-Cβ distances (layout in
``geometry``: bin 0 "beyond 20 Å", bins 1..36 of 0.5 Å from 2 to 20 Å). Turning them into coordinates is
what trRosetta did with Rosetta (Yang et al. 2020, PNAS, "Improved protein structure prediction using
predicted interresidue orientations"); here the same idea in a few steps a newcomer can read in one sitting:

1. ``distogram_potential``: per pair, an energy of the distance: ``-log p(bin)`` at the bin centres, joined
   by a cubic spline so its gradient is smooth; optionally minus trRosetta's background (the DFIRE
   reference ``p_ref(d) ∝ d^1.57``), so what is left is "more likely than chance at this distance". Pairs
   the model thinks are beyond 20 Å (uninformative: every far pair looks alike) and near neighbours in
   sequence (|i-j| < 3, fixed by chain geometry, handled by the bond term) are left out.
2. ``initial_coordinates``: classical multidimensional scaling (MDS) of the expected distance matrix gives a
   start already near the fold (or near its mirror image: eigenvector signs are arbitrary), instead of a
   random coil that gradient descent would have to untangle.
3. ``fold``: Adam on distogram energy + Cα-Cα bond springs (3.8 Å) + a clash wall. Distances alone do not
   fix chirality (a structure and its mirror image have identical distances, hence identical energies), so
   the hand is chosen afterwards from the Cα pseudo-torsions: right-handed helices and right-twisted strands
   give a positive ``handedness``, their mirror images a negative one.
4. Scores against the native: TM-score (Zhang & Skolnick 2004, Proteins 57:702), lDDT (Mariani et al.
   2013, Bioinformatics 29:2722) and Cα RMSD after optimal (Kabsch) superposition.
5. ``write_trajectory`` / ``trajectory_rmsd``: a multi-model PDB of the trace every k steps, read back with
   MDAnalysis to watch the RMSD to the native fall as the fold forms.

Cβ distances, Cα trace: the distogram is over Cβ (Cα for glycine) but we fold a Cα-only trace and read the
Cβ distances as if they were Cα distances. This is a known approximation: Cβ-Cβ and Cα-Cα distances of a
pair differ by up to ~3 Å (each Cβ sits 1.5 Å off the backbone, pointing in or out), so the trace is ~1 Å
off locally while the fold's topology is kept (1FKB from its true distogram: TM 0.94, Cα RMSD 0.95 Å). Placing virtual Cβ atoms would
need backbone N and C, i.e. a full-atom model, which is beyond a "small and readable" folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from pipelines.protein.geometry import DISTOGRAM_EDGES

BIN_CENTRES = (DISTOGRAM_EDGES[:-1] + DISTOGRAM_EDGES[1:]) / 2  # Å, centres of bins 1..36 (2.25 .. 19.75)
CA_CA_BOND = 3.8  # Å, trans peptide Cα-Cα distance (cis, 2.9 Å, is rare enough to ignore)
CLASH_ANGSTROM = 3.8  # Å, non-bonded Cα closer than a bond length never happens in real proteins
MIN_SEPARATION = 3  # |i-j| < 3 is local chain geometry (bond, clash wall), and their Cβ distances say little of Cα
FAR_CUTOFF = 0.5  # pairs with p(beyond 20 Å) above this carry no distance information and are dropped
EPS = 1e-4  # probability floor before the log: a bin the model gave 0 gets a large but finite energy
BACKGROUND_ALPHA = 1.57  # DFIRE's exponent, as in trRosetta: ideal-gas-in-a-finite-sphere pair density
FAR_SLOPE = 1.0  # energy/Å beyond the last bin centre: a gentle pull back into the range the model speaks of
BOND_WEIGHT = 1000.0  # energy/Å²: holds bonds to ~0.1 Å against ~L pairs whose Cβ distances, read as Cα, pull apart
CLASH_WEIGHT = 100.0  # energy/Å²: a wall, not a suggestion, yet softer than a bond so MDS overlaps can slide apart
FAR_DISTANCE = 20.0  # Å: the least distance of a "beyond 20 Å" pair, used to clip its MDS estimate


# --- 1. the potential ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistogramPotential:
    """Cubic-spline energies of the distance for the pairs (i, j) with i < j that carry information."""

    i: np.ndarray  # int64 (P,): first residue of each used pair
    j: np.ndarray  # int64 (P,): second residue, j - i >= MIN_SEPARATION
    coefficients: np.ndarray  # float32 (P, 35, 4): per pair and segment between bin centres, x³ x² x 1

    @cached_property
    def _tensors(self):
        """The arrays as torch tensors, converted once rather than at every optimiser step."""
        import torch

        return torch.as_tensor(self.i), torch.as_tensor(self.j), torch.as_tensor(self.coefficients)

    def energy(self, coords):
        """Total energy (torch scalar) of ``coords``, an (L, 3) torch tensor; differentiable."""
        import torch

        i, j, coefficients = self._tensors
        d = torch.linalg.norm(coords[i] - coords[j], dim=-1)
        return _spline_energy(d, coefficients).sum()


def _spline_energy(d, coefficients):
    """Per-pair splines (P, 35, 4) at distances ``d`` (P,): flat below the first centre, a ramp beyond the last."""
    import torch

    knots = torch.as_tensor(BIN_CENTRES, dtype=d.dtype)
    inside = d.clamp(knots[0], knots[-1])
    segment = (torch.searchsorted(knots, inside.detach(), right=True) - 1).clamp(0, len(knots) - 2)
    dx = inside - knots[segment]
    c3, c2, c1, c0 = coefficients[torch.arange(len(d)), segment].unbind(-1)
    value = ((c3 * dx + c2) * dx + c1) * dx + c0
    # below 2.25 Å the clash term takes over, so the spline is simply held flat there
    return value + FAR_SLOPE * torch.relu(d - knots[-1])


def pair_energies(probs: np.ndarray, background: bool = True) -> np.ndarray:
    """(L, L, 36) energy at each bin centre: ``-log p(bin)``, minus trRosetta's background if asked.

    The background is the DFIRE reference state: in a compact chain the number of pairs at distance d grows
    like d^α (α = 1.57 rather than 2: the sphere is finite), so ``p_ref(d_k) = p_last (d_k / d_last)^α`` with
    ``p_last`` the pair's own probability in the last bin (19.5-20 Å); subtracting ``-log p_ref`` leaves the
    log-odds of each bin against "the pair is just somewhere in the protein".
    """
    p = np.maximum(probs[..., 1:], EPS)  # bins 1..36; bin 0 has no centre and is handled by the mask
    energy = -np.log(p)
    if background:
        reference = p[..., -1:] * (BIN_CENTRES / BIN_CENTRES[-1]) ** BACKGROUND_ALPHA
        energy = energy + np.log(reference)
    return energy.astype(np.float32)


def informative_pairs(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i < j, of the pairs the potential uses: separated in sequence and not predicted far."""
    length = len(probs)
    i, j = np.triu_indices(length, MIN_SEPARATION)
    keep = probs[i, j, 0] <= FAR_CUTOFF
    return i[keep], j[keep]


def distogram_potential(probs: np.ndarray, background: bool = True) -> DistogramPotential:
    """The differentiable distogram energy of ``probs`` (L, L, 37); see ``pair_energies`` for the background."""
    from scipy.interpolate import CubicSpline

    _check_probs(probs)
    i, j = informative_pairs(probs)
    energy = pair_energies(probs, background)[i, j]  # (P, 36)
    # natural spline: no invented slope at the ends, and it passes exactly through every bin's energy
    spline = CubicSpline(BIN_CENTRES, energy, axis=1, bc_type="natural")
    coefficients = np.ascontiguousarray(spline.c.transpose(2, 1, 0), dtype=np.float32)  # scipy: (4, 35, P)
    return DistogramPotential(i=i.astype(np.int64), j=j.astype(np.int64), coefficients=coefficients)


def _check_probs(probs: np.ndarray) -> None:
    if probs.ndim != 3 or probs.shape[0] != probs.shape[1] or probs.shape[2] != len(DISTOGRAM_EDGES):
        raise ValueError(f"distogram probabilities must be (L, L, {len(DISTOGRAM_EDGES)}), got {probs.shape}")


# --- 2. the start: classical MDS -------------------------------------------------------------------------


def expected_distances(probs: np.ndarray) -> np.ndarray:
    """(L, L) distance estimate: the mean bin centre for confident pairs, shortest paths for far ones.

    A pair predicted beyond 20 Å has no centre to average; a constant (say 22 Å) would squash an elongated
    protein, so its distance is completed by the shortest path through the confident pairs (an upper bound by
    the triangle inequality), clipped below at 20 Å because the model did say "beyond 20".
    """
    from scipy.sparse.csgraph import shortest_path

    near = probs[..., 1:]
    mean = (near * BIN_CENTRES).sum(-1) / np.maximum(near.sum(-1), EPS)
    confident = probs[..., 0] <= FAR_CUTOFF
    np.fill_diagonal(confident, False)
    graph = np.where(confident, mean, 0.0)  # 0 = no edge for csgraph
    paths = shortest_path(graph, method="FW", directed=False)  # Floyd-Warshall: L ~ 100-500, dense graph
    paths = np.where(np.isinf(paths), FAR_DISTANCE + 2.0, paths)  # a disconnected piece: just "far"
    dist = np.where(confident, mean, np.maximum(paths, FAR_DISTANCE))
    np.fill_diagonal(dist, 0.0)
    return ((dist + dist.T) / 2).astype(np.float64)


def classical_mds(dist: np.ndarray) -> np.ndarray:
    """(L, 3) points whose distances best match ``dist`` (L, L): top 3 eigenvectors of the Gram matrix."""
    length = len(dist)
    centring = np.eye(length) - 1.0 / length
    gram = -0.5 * centring @ (dist**2) @ centring
    values, vectors = np.linalg.eigh(gram)  # ascending
    top = np.argsort(values)[::-1][:3]
    return vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))


def initial_coordinates(probs: np.ndarray, seed: int = 0) -> np.ndarray:
    """(L, 3) float32 MDS start; its mirror (``-coords``) is an equally good start: distances fix no hand.

    The seed adds 0.1 Å of jitter so that residues with identical predicted rows (or an MDS solution of
    rank < 3) do not sit on top of each other, which would leave their clash gradient undefined.
    """
    _check_probs(probs)
    coords = classical_mds(expected_distances(probs))
    rng = np.random.default_rng(seed)
    return (coords + rng.normal(scale=0.1, size=coords.shape)).astype(np.float32)


# --- 3. the fold -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldResult:
    """A folded Cα trace and how it got there."""

    coords: np.ndarray  # float32 (L, 3): the final Cα trace, in the hand chosen by `handedness`
    energies: np.ndarray  # float32 (steps,): total energy per step
    trajectory: np.ndarray  # float32 (frames, L, 3): coordinates every `save_every` steps, start and end included
    start: np.ndarray  # float32 (L, 3): the MDS start (mirrored along with the rest if the mirror was kept)
    mirrored: bool  # whether the mirror image of the raw fold was kept
    handedness: float  # mean sin(2τ) of the kept trace's Cα pseudo-torsions: > 0 for a right-handed protein


def chain_energy(coords):
    """Bond springs on consecutive Cα plus a clash wall on all other pairs; torch scalar."""
    import torch

    bonds = torch.linalg.norm(coords[1:] - coords[:-1], dim=-1)
    bond = BOND_WEIGHT * ((bonds - CA_CA_BOND) ** 2).sum()
    i, j = torch.triu_indices(len(coords), len(coords), offset=2)
    d = torch.linalg.norm(coords[i] - coords[j], dim=-1)
    clash = CLASH_WEIGHT * (torch.relu(CLASH_ANGSTROM - d) ** 2).sum()
    return bond + clash


def _minimise(potential: DistogramPotential, start: np.ndarray, steps: int, lr: float, save_every: int):
    """Adam from ``start``; returns (final coords, energy per step, saved frames)."""
    import torch

    coords = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([coords], lr=lr)
    # linear decay to zero: large early moves to leave the MDS compromise, then settle into the minimum
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0 - step / steps)
    energies, frames = [], [start.copy()]
    for step in range(steps):
        optimiser.zero_grad()
        energy = potential.energy(coords) + chain_energy(coords)
        energy.backward()
        optimiser.step()
        schedule.step()
        energies.append(energy.item())
        if (step + 1) % save_every == 0 or step + 1 == steps:
            frames.append(coords.detach().numpy().copy())
    return coords.detach().numpy().copy(), np.array(energies, dtype=np.float32), np.stack(frames)


def pseudo_torsions(coords: np.ndarray) -> np.ndarray:
    """(L-3,) Cα pseudo-torsions in degrees, IUPAC sign: about +50° in a right-handed α-helix."""
    x = np.asarray(coords, dtype=np.float64)
    b0, b1, b2 = x[:-3] - x[1:-2], x[2:-1] - x[1:-2], x[3:] - x[2:-1]
    b1 = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v = b0 - (b0 * b1).sum(1, keepdims=True) * b1  # the two outer bonds projected off the middle one
    w = b2 - (b2 * b1).sum(1, keepdims=True) * b1
    return np.degrees(np.arctan2((np.cross(b1, v) * w).sum(1), (v * w).sum(1)))


def handedness(coords: np.ndarray) -> float:
    """Mean sin(2τ) over Cα pseudo-torsions τ: > 0 for the natural hand of a protein, < 0 for its mirror.

    Right-handed α-helices sit at τ ≈ +50° and right-twisted β-strands at τ ≈ -120..-180°; both have
    sin(2τ) > 0, and a mirror image negates every τ, hence the sign. Over the 192 chains of
    /work/shared/data/protein the native value is >= 0.12 (α, β and mixed folds alike).
    """
    return float(np.sin(np.radians(2 * pseudo_torsions(coords))).mean())


def fold(
    probs: np.ndarray,
    sequence_length: int,
    steps: int = 600,  # enough for L ~ 100-200 from an MDS start: the energy curve is flat by then
    lr: float = 0.2,  # Å per step at most, at first (Adam's step is ~lr): a fraction of a bond
    seed: int = 0,
    background: bool = True,  # trRosetta's reference correction; it also adds a mild pull toward compactness
    save_every: int = 50,  # frames for the trajectory: ~12 frames at the default steps
) -> FoldResult:
    """Fold ``probs`` (L, L, 37) into a Cα trace, then keep whichever of it and its mirror is right-handed.

    Why not fold the MDS start and its mirror and keep the lower energy: every term here depends on distances
    only, so the mirror start gives exactly the mirror fold with exactly the same energy (Adam is equivariant
    under a sign flip); the energy cannot choose. The hand is instead read from the Cα pseudo-torsions
    (``handedness``), which carry the chirality the distances do not.

    Adam rather than L-BFGS: the energy is non-convex with many shallow spline wiggles, and a first-order
    method with a decaying step is robust to them without a line search that stalls at the clash wall's kink.
    """
    import torch

    _check_probs(probs)
    if len(probs) != sequence_length:
        raise ValueError(f"distogram is for {len(probs)} residues, sequence has {sequence_length}")
    torch.manual_seed(seed)  # nothing in Adam is random today; this keeps it so if that ever changes
    potential = distogram_potential(probs, background)
    start = initial_coordinates(probs, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few thousand pairs per step: thread hand-offs cost more than they save
    try:
        coords, energies, frames = _minimise(potential, start, steps, lr, save_every)
    finally:
        torch.set_num_threads(threads)
    hand = handedness(coords)
    sign = -1.0 if hand < 0 else 1.0  # a mirror image is x -> -x (a reflection through the origin)
    return FoldResult(
        coords=(sign * coords).astype(np.float32),
        energies=energies,
        trajectory=(sign * frames).astype(np.float32),
        start=(sign * start).astype(np.float32),
        mirrored=bool(hand < 0),
        handedness=abs(hand),
    )


# --- 4. scores against the native ------------------------------------------------------------------------


def kabsch(mobile: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``mobile`` (N, 3) rotated and translated onto ``target`` (N, 3) with least RMSD (proper rotation)."""
    mobile = np.asarray(mobile, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mc, tc = mobile.mean(0), target.mean(0)
    u, _, vt = np.linalg.svd((mobile - mc).T @ (target - tc))
    sign = np.sign(np.linalg.det(u @ vt))  # no reflection: a mirror image must stay a mirror image
    rotation = u @ np.diag([1.0, 1.0, sign]) @ vt
    return (mobile - mc) @ rotation + tc


def ca_rmsd(pred: np.ndarray, native: np.ndarray) -> float:
    """Cα RMSD (Å) of ``pred`` to ``native`` (both (L, 3), same residue order) after optimal superposition."""
    fitted = kabsch(pred, native)
    return float(np.sqrt(((fitted - native) ** 2).sum(-1).mean()))


def tm_score(pred: np.ndarray, native: np.ndarray) -> float:
    """TM-score of ``pred`` against ``native``, normalised by the native's length (TM-align via tmtools).

    TM-align searches the superposition (and residue alignment) that maximises
    ``1/L Σ 1 / (1 + (d_i/d0)²)`` with ``d0 = 1.24 (L-15)^(1/3) - 1.8``: 1 is identical, < 0.17 random,
    > 0.5 the same fold. A poly-alanine sequence is passed because the score must come from geometry alone.
    """
    from tmtools import tm_align

    pred = np.ascontiguousarray(pred, dtype=np.float64)
    native = np.ascontiguousarray(native, dtype=np.float64)
    result = tm_align(pred, native, "A" * len(pred), "A" * len(native))
    return float(result.tm_norm_chain2)


def ca_atom_array(coords: np.ndarray, sequence: str | None = None):
    """A biotite AtomArray of Cα atoms, one residue each (what biotite's lDDT and TM-score expect)."""
    import biotite.structure as struc

    length = len(coords)
    atoms = struc.AtomArray(length)
    atoms.coord = np.asarray(coords, dtype=np.float32)
    atoms.chain_id[:] = "A"
    atoms.res_id = np.arange(1, length + 1)
    atoms.res_name[:] = [_three_letter(aa) for aa in (sequence or "A" * length)]
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    return atoms


def lddt(pred: np.ndarray, native: np.ndarray) -> float:
    """Global Cα lDDT of ``pred`` against ``native`` (biotite): superposition-free, from distances only.

    Standard settings: pairs within 15 Å in the native, each scored by the fraction of the 0.5/1/2/4 Å
    tolerances its distance error falls within. Being built on distances, it is blind to chirality.
    """
    import biotite.structure as struc

    return float(struc.lddt(ca_atom_array(native), np.asarray(pred, dtype=np.float32)))


# --- 5. trajectories -------------------------------------------------------------------------------------


def _three_letter(letter: str) -> str:
    import gemmi

    name = gemmi.expand_one_letter(letter, gemmi.ResidueKind.AA)
    return name or "UNK"


def write_trajectory(frames: np.ndarray, sequence: str, path: str | Path) -> Path:
    """A multi-model PDB of the Cα trace: one MODEL per frame of ``frames`` (F, L, 3), residues named."""
    path = Path(path)
    path.write_text(trajectory_text(frames, sequence))
    return path


def trajectory_text(frames: np.ndarray, sequence: str) -> str:
    """The PDB text of ``write_trajectory`` (a single trace: frames of shape (1, L, 3))."""
    import gemmi

    frames = np.asarray(frames, dtype=np.float64)
    if frames.shape[1] != len(sequence):
        raise ValueError(f"frames have {frames.shape[1]} residues, sequence has {len(sequence)}")
    structure = gemmi.Structure()
    for number, frame in enumerate(frames, start=1):
        model = gemmi.Model(number)
        chain = gemmi.Chain("A")
        for index, (letter, xyz) in enumerate(zip(sequence, frame), start=1):
            residue = gemmi.Residue()
            residue.name = _three_letter(letter)
            residue.seqid = gemmi.SeqId(index, " ")
            atom = gemmi.Atom()
            atom.name = "CA"
            atom.element = gemmi.Element("C")
            atom.pos = gemmi.Position(*xyz)
            atom.occ = 1.0
            residue.add_atom(atom)
            chain.add_residue(residue)
        model.add_chain(chain)
        structure.add_model(model)
    return structure.make_pdb_string()


def trajectory_rmsd(path: str | Path, native_ca: np.ndarray) -> np.ndarray:
    """(F,) Cα RMSD (Å) to ``native_ca`` (L, 3) of every model in the PDB at ``path``, read with MDAnalysis."""
    import MDAnalysis
    from MDAnalysis.analysis import rms

    universe = MDAnalysis.Universe(str(path))
    native = np.asarray(native_ca, dtype=np.float64)
    return np.array([rms.rmsd(universe.atoms.positions, native, superposition=True) for _ in universe.trajectory])
