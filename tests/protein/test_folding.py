"""Folding a Cα trace from distograms: a real native (FKBP12, 1FKB, 107 residues), its true and noisy distograms."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from pipelines.protein import folding
from pipelines.protein.geometry import distances, distogram_labels, representative_atoms

NATIVE = Path("/work/shared/data/protein/1FKB.pdb.gz")  # FKBP12: mixed α/β, no chain break, L ~ 100

pytestmark = pytest.mark.skipif(not NATIVE.exists(), reason="shared PDB data not mounted")


def _read_native(path: Path) -> tuple[str, np.ndarray]:
    """(sequence, (L, 4, 3) N/CA/C/CB) of the first chain, straight from gemmi."""
    structure = gemmi.read_structure(str(path))
    structure.remove_ligands_and_waters()
    chain = structure[0][0]
    residues = [r for r in chain if r.find_atom("CA", "*")]
    sequence = gemmi.one_letter_code([r.name for r in residues])

    def position(residue, name):
        atom = residue.find_atom(name, "*")
        return atom.pos.tolist() if atom else [np.nan] * 3

    coords = np.array([[position(r, n) for n in ("N", "CA", "C", "CB")] for r in residues], dtype=np.float32)
    return sequence, coords


def _soften(labels: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """One-hot distogram labels (L, L) -> probabilities (L, L, 37) smeared over neighbouring distance bins."""
    onehot = np.eye(37)[labels]
    probs = onehot.copy()
    probs[..., 1:] = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), -1, onehot[..., 1:])
    probs += 1e-3  # no bin is impossible, as with any softmax output
    return probs / probs.sum(-1, keepdims=True)


def _random_coil(length: int, seed: int) -> np.ndarray:
    """A 3.8 Å random walk: the baseline a fold must beat."""
    steps = np.random.default_rng(seed).normal(size=(length, 3))
    steps *= folding.CA_CA_BOND / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0)


@pytest.fixture(scope="module")
def native():
    sequence, coords = _read_native(NATIVE)
    labels = distogram_labels(distances(representative_atoms(coords, sequence)))
    return sequence, coords[:, 1].astype(np.float64), labels


@pytest.fixture(scope="module")
def true_probs(native):
    return _soften(native[2], np.array([0.1, 0.8, 0.1]))


@pytest.fixture(scope="module")
def noisy_probs(native):
    """Blurred over ±2 Å, then 20 % of the pairs replaced by random distributions (symmetrically)."""
    labels = native[2]
    probs = _soften(labels, np.array([0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.15, 0.1, 0.05, 0.0, 0.0]))
    rng = np.random.default_rng(7)
    i, j = np.triu_indices(len(labels), 1)
    pick = rng.random(len(i)) < 0.2
    junk = rng.dirichlet(np.ones(37), size=int(pick.sum()))
    probs[i[pick], j[pick]] = junk
    probs[j[pick], i[pick]] = junk
    return probs


@pytest.fixture(scope="module")
def folded(native, true_probs):
    return folding.fold(true_probs, len(native[0]), seed=0)


@pytest.fixture(scope="module")
def folded_noisy(native, noisy_probs):
    return folding.fold(noisy_probs, len(native[0]), seed=0)


# --- folding ---------------------------------------------------------------------------------------------


def test_true_distogram_folds_to_the_native(native, folded):
    ca = native[1]
    tm = folding.tm_score(folded.coords, ca)
    final, start = folding.ca_rmsd(folded.coords, ca), folding.ca_rmsd(folded.start, ca)
    print(f"true distogram: TM {tm:.3f}, RMSD {start:.2f} -> {final:.2f} Å, lDDT {folding.lddt(folded.coords, ca):.3f}")
    assert tm > 0.5
    assert final <= start + 1e-3
    assert folded.energies[-1] < folded.energies[0]


def test_noisy_distogram_beats_a_random_coil(native, folded_noisy):
    ca = native[1]
    tm = folding.tm_score(folded_noisy.coords, ca)
    coil = max(folding.tm_score(_random_coil(len(ca), seed), ca) for seed in range(3))
    print(f"noisy distogram: TM {tm:.3f} RMSD {folding.ca_rmsd(folded_noisy.coords, ca):.2f} Å; coil TM {coil:.3f}")
    assert tm > coil + 0.1


@pytest.mark.parametrize("which", ["folded", "folded_noisy"])
def test_chain_geometry_holds(which, request):
    coords = request.getfixturevalue(which).coords
    bonds = np.linalg.norm(np.diff(coords, axis=0), axis=1)
    assert np.all(np.abs(bonds - 3.8) < 0.3)
    dist = distances(coords)
    i, j = np.triu_indices(len(coords), 2)
    assert dist[i, j].min() >= 3.0


def test_fold_is_deterministic_for_a_seed(true_probs):
    small = true_probs[:40, :40]  # the distogram of the first 40 residues is still a valid input
    a, b = (folding.fold(small, 40, steps=60, seed=3) for _ in range(2))
    assert a.coords.dtype == np.float32 and a.coords.shape == (40, 3)
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.energies, b.energies)
    assert len(a.energies) == 60


def test_fold_rejects_mismatched_input(true_probs):
    with pytest.raises(ValueError):
        folding.fold(true_probs, len(true_probs) + 1)
    with pytest.raises(ValueError):
        folding.distogram_potential(true_probs[..., :36])


def test_fold_keeps_the_right_hand(native, folded):
    ca = native[1]
    assert folding.handedness(ca) > 0.1 and folding.handedness(-ca) < -0.1
    assert folded.handedness > 0
    assert folding.tm_score(folded.coords, ca) > folding.tm_score(-folded.coords, ca)


def test_ideal_alpha_helix_has_positive_pseudo_torsion():
    turn = np.radians(100.0) * np.arange(12)  # 3.6 residues per turn, counter-clockwise while rising: right-handed
    helix = np.stack([2.3 * np.cos(turn), 2.3 * np.sin(turn), 1.5 * np.arange(12)], axis=1)
    np.testing.assert_allclose(folding.pseudo_torsions(helix), 50.0, atol=5.0)
    assert folding.handedness(helix) > 0.9


# --- the pieces ------------------------------------------------------------------------------------------


def test_potential_is_lowest_at_the_predicted_bin(true_probs, native):
    import torch

    potential = folding.distogram_potential(true_probs[:30, :30], background=False)
    pair = int(np.argmax((potential.j - potential.i) > 5))
    i, j = int(potential.i[pair]), int(potential.j[pair])
    grid = torch.linspace(2.0, 22.0, 401)
    energy = folding._spline_energy(grid, torch.as_tensor(potential.coefficients[[pair] * len(grid)]))
    best = float(grid[int(torch.argmin(energy))])
    centre = folding.BIN_CENTRES[native[2][i, j] - 1]
    assert abs(best - centre) <= 0.5
    assert (potential.j - potential.i >= folding.MIN_SEPARATION).all()
    assert (true_probs[potential.i, potential.j, 0] <= folding.FAR_CUTOFF).all()


def test_mds_start_is_near_the_native(native, folded):
    assert folding.ca_rmsd(folded.start, native[1]) < 3.0


# --- scores ----------------------------------------------------------------------------------------------


def _random_rigid_motion(points: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    if np.linalg.det(rotation) < 0:
        rotation[:, 0] *= -1  # a proper rotation: a reflection would be a mirror image
    return points @ rotation.T + rng.normal(scale=20.0, size=3)


def test_scores_are_invariant_to_rigid_motion(native, folded):
    ca, pred = native[1], folded.coords.astype(np.float64)
    moved = _random_rigid_motion(pred, seed=1)
    assert folding.tm_score(moved, ca) == pytest.approx(folding.tm_score(pred, ca), abs=1e-3)
    assert folding.ca_rmsd(moved, ca) == pytest.approx(folding.ca_rmsd(pred, ca), abs=1e-3)
    assert folding.lddt(moved, ca) == pytest.approx(folding.lddt(pred, ca), abs=1e-4)


def test_mirror_image_fools_lddt_but_not_tm(native):
    ca = native[1]
    mirror = ca * np.array([1.0, 1.0, -1.0])
    tm_mirror = folding.tm_score(mirror, ca)
    print(f"mirror of the native: TM {tm_mirror:.3f}, RMSD {folding.ca_rmsd(mirror, ca):.2f} Å")
    assert folding.tm_score(ca, ca) == pytest.approx(1.0, abs=1e-6)
    assert tm_mirror < 0.5
    # lDDT looks at distances only, and a mirror image has exactly the native's distances
    assert folding.lddt(mirror, ca) == pytest.approx(1.0)
    # RMSD after a *proper* rotation does see it (an improper superposition would give 0)
    assert folding.ca_rmsd(mirror, ca) > 2.0


def test_tm_score_agrees_with_biotite(native, folded):
    import biotite.structure as struc

    ca = native[1]
    rng = np.random.default_rng(0)
    for pred in (ca + rng.normal(scale=1.0, size=ca.shape), folded.coords.astype(np.float64)):
        fitted = folding.kabsch(pred, ca)  # biotite's TM-score takes coordinates as they are
        index = np.arange(len(ca))
        biotite_tm = struc.tm_score(
            folding.ca_atom_array(ca), folding.ca_atom_array(fitted), index, index, reference_length="reference"
        )
        ours = folding.tm_score(pred, ca)
        # TM-align searches superpositions (and alignments), a least-squares fit is one of them: a lower bound
        assert biotite_tm <= ours + 0.02
        assert ours - biotite_tm < 0.05


def test_rmsd_agrees_with_mdanalysis(native, folded):
    from MDAnalysis.analysis import rms

    ca = native[1]
    expected = rms.rmsd(folded.coords.astype(np.float64), ca, superposition=True)
    assert folding.ca_rmsd(folded.coords, ca) == pytest.approx(expected, abs=1e-3)


def test_lddt_matches_a_hand_computed_case():
    reference = np.array([[0.0, 0, 0], [3.0, 0, 0], [0.0, 4, 0], [30.0, 0, 0]])
    subject = reference.copy()
    subject[1, 0] = 3.0 + 0.7  # pair 0-1 off by 0.7 Å, pair 1-2 (5 Å) off by ~0.56 Å
    # pairs within 15 Å of the reference: 0-1, 0-2, 1-2 (atom 3 is 27-30 Å from all)
    d12 = np.hypot(3.7, 4.0) - 5.0  # 0.440 Å
    per_pair = [
        np.mean([0.7 < t for t in (0.5, 1.0, 2.0, 4.0)]),  # 0-1: passes 1, 2, 4 Å -> 3/4
        1.0,  # 0-2 unchanged
        np.mean([abs(d12) < t for t in (0.5, 1.0, 2.0, 4.0)]),  # 1-2: 0.44 Å passes all four
    ]
    assert folding.lddt(subject, reference) == pytest.approx(np.mean(per_pair))


# --- trajectory ------------------------------------------------------------------------------------------


def test_trajectory_has_one_model_per_frame_and_converges(native, folded, tmp_path):
    sequence, ca = native[0], native[1]
    path = folding.write_trajectory(folded.trajectory, sequence, tmp_path / "fold.pdb")
    structure = gemmi.read_structure(str(path))
    assert len(structure) == len(folded.trajectory) > 2
    assert structure[0][0][0].name == gemmi.expand_one_letter(sequence[0], gemmi.ResidueKind.AA)
    rmsd = folding.trajectory_rmsd(path, ca)
    print("trajectory RMSD:", np.round(rmsd, 2))
    assert len(rmsd) == len(folded.trajectory)
    assert rmsd[-1] < rmsd[0]
    assert rmsd[-1] == pytest.approx(folding.ca_rmsd(folded.coords, ca), abs=0.01)  # PDB keeps 3 decimals
