"""Geometry (virtual Cβ, distogram, contact precision) and the PyG graphs, on hand-made and known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines.protein import geometry, graph


def ideal_backbone(length: int, seed: int = 0) -> np.ndarray:
    """(L, 4, 3) N, Cα, C, NaN-Cβ of a random chain with 3.8 Å Cα steps (N, C 1.46/1.52 Å off Cα)."""
    rng = np.random.default_rng(seed)
    ca = np.cumsum(3.8 * _unit(rng.normal(size=(length, 3))), axis=0)
    n = ca + 1.46 * _unit(rng.normal(size=(length, 3)))
    c = ca + 1.52 * _unit(rng.normal(size=(length, 3)))
    return np.stack([n, ca, c, np.full_like(ca, np.nan)], axis=1)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_virtual_cb_sits_1_5_angstrom_from_ca_on_a_real_backbone_geometry():
    # an ideal alanine backbone (Engh & Huber): N-Cα 1.458 Å, Cα-C 1.525 Å, N-Cα-C 111°
    ca = np.zeros(3)
    n = np.array([1.458, 0.0, 0.0])
    angle = math.radians(111.0)
    c = 1.525 * np.array([math.cos(angle), math.sin(angle), 0.0])
    cb = geometry.virtual_cb(n, ca, c)
    assert np.linalg.norm(cb - ca) == pytest.approx(1.52, abs=0.03)
    # tetrahedral: the N-Cα-Cβ and C-Cα-Cβ angles are both near 110°
    for other in (n, c):
        cos = np.dot(other - ca, cb - ca) / (np.linalg.norm(other - ca) * np.linalg.norm(cb - ca))
        assert math.degrees(math.acos(cos)) == pytest.approx(110, abs=3)


def test_representative_atoms_glycine_uses_ca_and_missing_cb_is_virtual():
    coords = ideal_backbone(3).astype(np.float32)
    coords[2, 3] = coords[2, 1] + [1.5, 0, 0]  # an observed Cβ is kept as is
    points = geometry.representative_atoms(coords, "GAV")
    np.testing.assert_allclose(points[0], coords[0, 1])  # glycine: Cα
    assert np.linalg.norm(points[1] - coords[1, 1]) > 0.5  # virtual, not Cα
    np.testing.assert_allclose(points[2], coords[2, 3])


def test_distogram_bins_and_contact_probability_agree():
    dist = np.array([[0.0, 3.1, 7.9], [3.1, 0.0, 8.1], [7.9, 8.1, np.nan]], dtype=np.float32)
    dist[1, 1] = 25.0
    labels = geometry.distogram_labels(dist)
    assert labels[0, 1] == 1 + int((3.1 - 2.0) // 0.5)
    assert labels[1, 1] == 0 and labels[2, 2] == -1
    onehot = np.eye(geometry.N_DISTOGRAM_BINS)[np.clip(labels, 0, None)]
    p = geometry.contact_probability(onehot)
    assert p[0, 2] == 1.0 and p[1, 2] == 0.0 and p[1, 1] == 0.0  # 7.9 Å a contact, 8.1 Å not


def test_top_precision_counts_only_pairs_of_the_range_with_known_distance():
    length = 60
    dist = np.full((length, length), 30.0, dtype=np.float32)
    dist[0, 40] = dist[40, 0] = 5.0  # one long-range contact
    dist[1, 41] = dist[41, 1] = np.nan  # unobserved pair: never counted
    scores = np.zeros_like(dist)
    scores[1, 41] = 10.0  # the top score on an unknown pair must be skipped
    scores[0, 40] = 5.0
    assert geometry.top_precision(scores, dist, "long", 60) == 1.0  # top L/60 = 1 pair: the contact
    assert geometry.top_precision(scores, dist, "long", 30) == 0.5
    assert geometry.top_precision(scores, np.full((10, 10), 5.0), "long", 1) is None  # no |i-j| >= 24


def test_separation_baseline_beats_random_on_a_compact_chain():
    coords = ideal_backbone(120, seed=1)
    dist = geometry.distances(geometry.representative_atoms(coords, "A" * 120))
    sep = geometry.precision_table(geometry.separation_baseline(120), dist)
    rnd = geometry.precision_table(geometry.random_baseline(120, seed=0), dist)
    assert sep["short/L/5"] >= rnd["short/L/5"]


def test_sequence_graph_has_no_coordinates_and_symmetric_window_edges():
    data = graph.sequence_graph("ACDEFGHIKX", window=2)
    assert data.num_nodes == 10 and data.x.shape == (10, 22) and "pos" not in data
    assert int(data.aa[-1]) == 20  # X: the non-standard index
    sep = (data.edge_index[0] - data.edge_index[1]).abs()
    assert sep.min() == 1 and sep.max() == 2
    assert data.edge_index.shape[1] == 2 * (9 + 8)
    # the two directions of an edge carry different separation features (sign)
    forward = data.edge_attr[(data.edge_index[0] - data.edge_index[1]) == 1][0]
    backward = data.edge_attr[(data.edge_index[0] - data.edge_index[1]) == -1][0]
    assert not torch.equal(forward, backward)


def test_knn_edges_match_brute_force():
    pos = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    edges = graph.knn_edges(pos, k=4)
    for target in range(30):
        sources = set(edges[0][edges[1] == target].tolist())
        d = (pos - pos[target]).norm(dim=1)
        d[target] = float("inf")
        assert sources == set(d.argsort()[:4].tolist())


def test_structure_graph_features_are_invariant_to_a_rigid_motion():
    backbone = torch.tensor(ideal_backbone(40, seed=2)[:, :3], dtype=torch.float32)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]  # a rotation, not a reflection
    moved = backbone @ q.T + torch.tensor([5.0, -3.0, 12.0])
    a, b = graph.structure_graph("A" * 40, backbone), graph.structure_graph("A" * 40, moved)
    assert torch.equal(a.edge_index, b.edge_index)
    torch.testing.assert_close(a.edge_attr, b.edge_attr, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.pos, moved[:, 1])
