"""The EGNN refiner: exact E(3) equivariance (rotation, reflection, translation), invariant features, node
permutation equivariance, the graph it builds, and a short fit on a real chain that must bring held-out noisy
copies closer to the native (a behavioural test of learning, not a benchmark)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.protein import egnn
from pipelines.protein.graph import separation_features

SEQUENCE = "MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGHLLTKSPSL"  # 39 residues of T4 lysozyme: any letters would do


def random_chain(length: int, seed: int = 0) -> torch.Tensor:
    """(L, 3) float64 Cα of a random walk with 3.8 Å steps: no ties among distances, so kNN is unambiguous."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(length, 3))
    return torch.from_numpy(np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0))


def orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    """A random 3x3 rotation (det +1), or a rotation times a mirror (det -1): both are in E(3)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    q = q * torch.sign(torch.diagonal(r))  # QR's sign convention, fixed so that q is uniformly random
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)) if reflect else q


def moving_net() -> egnn.RefinementNet:
    """A float64 net whose coordinate heads are at full scale: at the default near-identity init (gain 0.001)
    the displacement is ~1e-3 Å and equivariance to 1e-4 would hold for almost any update (gain 30: ~0.7 Å)."""
    torch.manual_seed(0)
    net = egnn.RefinementNet(hidden=32, layers=3).double()
    for layer in net.layers:
        torch.nn.init.xavier_uniform_(layer.phi_x[-1].weight, gain=30.0)
    return net


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_refined_coordinates_move_with_the_input_and_features_do_not(reflect):
    net = moving_net()
    ca = random_chain(len(SEQUENCE))
    rotation, shift = orthogonal(1, reflect), torch.tensor([12.0, -30.0, 7.5], dtype=torch.float64)
    with torch.no_grad():
        h, pos = net.encode(egnn.refinement_input(SEQUENCE, ca))
        h_moved, pos_moved = net.encode(egnn.refinement_input(SEQUENCE, ca @ rotation.T + shift))
    displacement = (pos - ca).norm(dim=-1).mean()
    assert displacement > 0.1, displacement  # the net does move residues, so the check below is not vacuous
    torch.testing.assert_close(pos_moved, pos @ rotation.T + shift, atol=1e-8, rtol=0)  # measured ~1e-14 Å
    torch.testing.assert_close(h_moved, h, atol=1e-6, rtol=0)


def test_layers_are_equivariant_to_renumbering_the_nodes():
    # only the layers: the whole net is sequence-aware on purpose (node position, sequence edges and their
    # separation features follow the chain's order), so renumbering residues changes the protein it sees
    net = moving_net()
    ca = random_chain(len(SEQUENCE))
    edge_index = egnn.refinement_edges(ca, k=8, window=2)
    edge_attr = separation_features(edge_index).double()
    h = torch.randn(len(ca), 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def run(h, x, edge_index, edge_attr):
        for layer in net.layers:
            h, x = layer(h, x, edge_index, edge_attr)
        return h, x

    generator = torch.Generator().manual_seed(3)
    order = torch.randperm(len(ca), generator=generator)  # new node k is old node order[k]
    new_id = torch.empty_like(order)
    new_id[order] = torch.arange(len(order))
    edge_order = torch.randperm(edge_index.shape[1], generator=generator)  # edge order must not matter either
    with torch.no_grad():
        h_out, x_out = run(h, ca, edge_index, edge_attr)
        h_perm, x_perm = run(h[order], ca[order], new_id[edge_index][:, edge_order], edge_attr[edge_order])
    torch.testing.assert_close(x_perm, x_out[order], atol=1e-10, rtol=0)
    torch.testing.assert_close(h_perm, h_out[order], atol=1e-10, rtol=0)


def test_graph_joins_every_consecutive_pair_and_keeps_chains_apart():
    # k=2 on a scrambled cloud: sequence neighbours are rarely spatial ones, so only the sequence edges add them
    ca = torch.randn(30, 3, generator=torch.Generator().manual_seed(4)) * 10
    edge_index = egnn.refinement_edges(ca, k=2, window=2, ptr=torch.tensor([0, 12, 30]))
    edges = set(map(tuple, edge_index.T.tolist()))
    for start, end in ((0, 12), (12, 30)):
        for i in range(start, end - 1):
            assert (i, i + 1) in edges and (i + 1, i) in edges
    assert all(s != t for s, t in edges)
    assert all((s < 12) == (t < 12) for s, t in edges)  # nothing crosses from chain 0 to chain 1
    assert len(edges) == edge_index.shape[1]  # coalesced: no duplicates


def test_superposed_rmsd_ignores_rigid_motion_but_not_a_mirror():
    ca = random_chain(50)
    moved = ca @ orthogonal(5, reflect=False).T + 4.0
    assert egnn.superposed_rmsd(moved, ca) == pytest.approx(0.0, abs=1e-9)
    mirrored = ca @ orthogonal(5, reflect=True).T
    assert egnn.superposed_rmsd(mirrored, ca) > 1.0  # a chiral chain cannot be rotated onto its mirror image
    uniform = ca + torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64) * torch.tensor([[1.0], [-1.0]]).repeat(25, 1)
    assert egnn.superposed_rmsd(uniform, ca) <= 0.5 + 1e-9  # ±0.5 Å shifts: at most 0.5 Å after the best fit


def test_loss_is_zero_at_the_native_and_perturb_is_seeded():
    ca = random_chain(40).float()
    assert egnn.refinement_loss(ca, ca).item() == pytest.approx(0.0, abs=1e-6)
    noisy = egnn.perturb(ca, 1.5, seed=7)
    torch.testing.assert_close(noisy, egnn.perturb(ca, 1.5, seed=7))
    assert not torch.equal(noisy, egnn.perturb(ca, 1.5, seed=8))
    rms = ((noisy - ca) ** 2).sum(-1).mean().sqrt().item()
    assert rms == pytest.approx(1.5 * 3**0.5, rel=0.2)  # sigma per coordinate, sqrt(3) sigma per residue
    assert egnn.refinement_loss(noisy, ca).item() > rms**2  # coordinate term plus a positive distance term


@pytest.fixture
def one_thread():
    """One intra-op thread for the fit: these ops are tiny, and on a busy 2-core box two threads contend
    (measured 0.45 s/step against 0.05 s/step with one); restored afterwards for the other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_short_fit_on_a_real_chain_refines_a_held_out_noisy_copy(shared_data, one_thread):
    from pipelines.protein.structure import read_structure

    chain = read_structure(shared_data / "protein" / "107L.pdb.gz")[0]  # T4 lysozyme, 162 residues, no gap
    native = torch.from_numpy(chain.coords[:, 1].copy())  # Cα
    sigma = 1.0  # Å per coordinate: ~1.7 Å RMSD, the scale of a decent predicted model's errors
    torch.manual_seed(0)
    net = egnn.RefinementNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    for step in range(200):  # a fresh noisy copy every step: the net cannot memorise the noise
        data = egnn.refinement_input(chain.sequence, egnn.perturb(native, sigma, seed=step))
        loss = egnn.refinement_loss(net(data), native)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    test = egnn.refinement_input(chain.sequence, egnn.perturb(native, sigma, seed=10_000))  # noise never trained on
    with torch.no_grad():
        refined = net(test)
    before, after = egnn.superposed_rmsd(test.pos, native), egnn.superposed_rmsd(refined, native)
    print(f"107L Cα RMSD to native: perturbed {before:.3f} Å, refined {after:.3f} Å")
    assert after < 0.8 * before, (before, after)  # measured 1.79 -> 1.16 Å
