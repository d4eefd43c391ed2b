"""The contact network: shapes and symmetry, the loss mask, and a short fit on a real chain that must lift
long-range precision above random (a behavioural test of learning, not a benchmark)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.protein import geometry
from pipelines.protein.contacts import ContactNet, distogram_loss
from pipelines.protein.graph import sequence_graph


def small_net(**kw):
    torch.manual_seed(0)
    return ContactNet(hidden=32, layers=2, heads=2, channels=16, blocks=2, dropout=0.0, **kw)


def test_logits_are_symmetric_per_pair_and_sized_by_the_chain():
    net = small_net().eval()
    for length in (7, 31):
        logits = net(sequence_graph(("ACDEFGHIKLMNPQRSTVWY" * 2)[:length]))
        assert logits.shape == (length, length, geometry.N_DISTOGRAM_BINS)
        torch.testing.assert_close(logits, logits.transpose(0, 1))


def test_loss_ignores_unknown_and_near_diagonal_pairs():
    logits = torch.zeros(5, 5, geometry.N_DISTOGRAM_BINS, requires_grad=True)
    labels = torch.full((5, 5), -1, dtype=torch.long)
    labels[0, 4] = labels[4, 0] = 3
    labels[0, 1] = 7  # |i-j| = 1: masked
    loss = distogram_loss(logits, labels)
    loss.backward()
    assert loss.item() == pytest.approx(np.log(geometry.N_DISTOGRAM_BINS), rel=1e-5)
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[0, 4].abs().sum() > 0


def test_a_short_fit_on_a_real_chain_finds_its_long_range_contacts(shared_data):
    from pipelines.protein.structure import read_structure

    chain = read_structure(shared_data / "protein" / "1BNZ.pdb.gz")[0]  # a 60-70 residue real chain
    dist = geometry.distances(geometry.representative_atoms(chain.coords, chain.sequence))
    labels = torch.as_tensor(geometry.distogram_labels(dist))
    data = sequence_graph(chain.sequence)
    net = small_net()
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = distogram_loss(net(data), labels)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    net.eval()
    with torch.no_grad():
        probs = torch.softmax(net(data), -1).numpy()
    scores = geometry.contact_probability(probs)
    fitted = geometry.top_precision(scores, dist, "long", 5)
    chance = geometry.top_precision(geometry.random_baseline(len(dist), 0), dist, "long", 5)
    assert fitted is not None and fitted > chance + 0.2, (fitted, chance)
