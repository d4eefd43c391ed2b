"""Contact and distance prediction from sequence alone: a PyG graph encoder, then a 2-D convolutional pair head.

The network reads one chain's `graph.sequence_graph` (residues joined to their sequence neighbours, edges
carrying the signed separation) and predicts, for every residue pair, a distogram over Cβ distances
(geometry.DISTOGRAM_EDGES: bin 0 beyond 20 Å, 36 bins of 0.5 Å from 2 Å). Contact probabilities are the mass
below 8 Å (geometry.contact_probability).

1. `SequenceEncoder`: residue types -> embeddings, then `layers` rounds of attention-based message passing
   (PyG's TransformerConv, edge features in the attention) over the sequence graph: each residue learns its
   local context (secondary-structure propensity lives within a few positions).
2. `PairHead`: every pair (i, j) gets [h_i, h_j, h_i * h_j, embedding of the clipped signed separation], and
   a stack of dilated residual 2-D convolutions lets pairs see their neighbours in the map (contacts come in
   lines: helices pack along diagonals, strands pair along anti-diagonals), then a linear layer to the bins;
   the logits are symmetrised since d(i, j) = d(j, i).
No MSA, no pretrained language model: this is what ~200 chains can teach (see README's benchmark).
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.protein.geometry import N_DISTOGRAM_BINS

MAX_SEPARATION = 32  # separations beyond this share one embedding: the map is translation-invariant far away


class SequenceEncoder(nn.Module):
    def __init__(self, hidden: int = 64, layers: int = 3, heads: int = 4, edge_dim: int = 26, dropout: float = 0.1):
        from torch_geometric.nn import TransformerConv

        super().__init__()
        self.embed = nn.Linear(22, hidden)  # graph.node_features: 21 residue types + relative position
        self.convs = nn.ModuleList(
            TransformerConv(hidden, hidden // heads, heads=heads, edge_dim=edge_dim, dropout=dropout)
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))

    def forward(self, x, edge_index, edge_attr):
        h = self.embed(x)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(h + torch.relu(conv(h, edge_index, edge_attr)))  # residual: deep stacks stay trainable
        return h


class ResidualBlock2d(nn.Module):
    def __init__(self, channels: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm1 = nn.InstanceNorm2d(channels, affine=True)  # per-map statistics: chains differ in length
        self.norm2 = nn.InstanceNorm2d(channels, affine=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z):
        y = torch.relu(self.norm1(self.conv1(z)))
        y = self.norm2(self.conv2(self.dropout(y)))
        return torch.relu(z + y)


class PairHead(nn.Module):
    def __init__(self, hidden: int = 64, channels: int = 32, blocks: int = 4, dropout: float = 0.1):
        super().__init__()
        self.separation = nn.Embedding(2 * MAX_SEPARATION + 1, channels)
        self.project = nn.Conv2d(3 * hidden + channels, channels, 1)
        # dilations 1, 2, 4, 8, ...: the receptive field grows to ~30 residues in a few blocks
        self.blocks = nn.Sequential(*(ResidualBlock2d(channels, 2 ** (b % 4), dropout) for b in range(blocks)))
        self.out = nn.Conv2d(channels, N_DISTOGRAM_BINS, 1)

    def forward(self, h):
        length = h.shape[0]
        hi = h.unsqueeze(1).expand(length, length, -1)
        hj = h.unsqueeze(0).expand(length, length, -1)
        idx = torch.arange(length, device=h.device)
        sep = (idx[None, :] - idx[:, None]).clamp(-MAX_SEPARATION, MAX_SEPARATION) + MAX_SEPARATION
        pair = torch.cat([hi, hj, hi * hj, self.separation(sep)], dim=-1)  # (L, L, C)
        z = self.project(pair.permute(2, 0, 1).unsqueeze(0))  # (1, C, L, L)
        logits = self.out(self.blocks(z))[0].permute(1, 2, 0)  # (L, L, bins)
        return (logits + logits.transpose(0, 1)) / 2


class ContactNet(nn.Module):
    """Sequence graph -> (L, L, 37) distogram logits, one chain at a time (pair maps differ in size)."""

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 3,
        heads: int = 4,
        channels: int = 32,
        blocks: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        from pipelines.protein.graph import SEPARATION_BUCKETS

        edge_dim = 2 * (len(SEPARATION_BUCKETS) + 1)  # graph.separation_features
        self.encoder = SequenceEncoder(hidden, layers, heads, edge_dim, dropout)
        self.head = PairHead(hidden, channels, blocks, dropout)

    def forward(self, data):
        return self.head(self.encoder(data.x, data.edge_index, data.edge_attr))


def distogram_loss(logits: torch.Tensor, labels: torch.Tensor, min_separation: int = 3) -> torch.Tensor:
    """Cross-entropy over pairs with a known distance and |i-j| >= min_separation (closer pairs are fixed by
    chain geometry and would dominate the loss)."""
    length = labels.shape[0]
    idx = torch.arange(length, device=labels.device)
    keep = ((idx[None, :] - idx[:, None]).abs() >= min_separation) & (labels >= 0)
    return nn.functional.cross_entropy(logits[keep], labels[keep])
