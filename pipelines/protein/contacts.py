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

Edge types (`edges`, the ablation of issue 12). The structure is not an input here, so spatial neighbours
cannot be read from coordinates as refinement does (egnn.py, graph.structure_graph): using the native's
would leak the answer at training and be impossible at inference. They are *predicted* instead:
- "sequence": the default and the only graph of one pass: residues within `window` positions;
- "spatial": a second pass of the same (weight-tied) encoder and head, over each residue's `spatial_k` most
  likely contacts in the first pass's distogram (chosen without gradient: neighbour choice is discrete), every
  edge carrying its signed separation like a sequence edge;
- both: the second pass sees the union. With "spatial" alone the first pass has no edges at all (each residue
  sees only itself and its chain position), so what it predicts comes from the pair head alone.
Every variant has the same parameters; only the graphs differ. The first pass's distogram is trained too
(module.py averages the loss over `passes`), else its contacts would be untrained guesses.
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.protein.config import EDGE_TYPES
from pipelines.protein.geometry import CONTACT_ANGSTROM, DISTOGRAM_EDGES, N_DISTOGRAM_BINS

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


def predicted_neighbours(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(2, L*k') edges to each residue from its k' = min(k, L-1) most likely contacts in (L, L, bins) logits.

    The predicted counterpart of graph.knn_edges (same layout: row 0 source, row 1 target), ranked by
    P(d < 8 Å), the mass of the distogram bins below the contact threshold (geometry.contact_probability).
    """
    below = torch.zeros(N_DISTOGRAM_BINS, dtype=torch.bool, device=logits.device)
    below[1:] = torch.as_tensor(DISTOGRAM_EDGES[1:] <= CONTACT_ANGSTROM, device=logits.device)
    scores = torch.softmax(logits.float(), -1)[..., below].sum(-1)
    scores.fill_diagonal_(-1.0)  # no self loops
    length = scores.shape[0]
    k = min(k, length - 1)
    neighbours = scores.topk(k, dim=1).indices  # (L, k): row i holds i's likeliest partners
    target = torch.arange(length, device=logits.device).repeat_interleave(k)
    return torch.stack([neighbours.reshape(-1), target])


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
        edges=("sequence",),  # the edge types (module docstring); sequence alone: one pass, as before the switch
        spatial_k: int = 16,  # predicted spatial neighbours per residue (used with "spatial" only)
    ):
        super().__init__()
        from pipelines.protein.graph import SEPARATION_BUCKETS

        self.edges, self.spatial_k = tuple(edges), spatial_k
        if not self.edges or set(self.edges) - set(EDGE_TYPES):
            raise ValueError(f"edges {list(self.edges)} is not a non-empty list of {' / '.join(EDGE_TYPES)}")
        edge_dim = 2 * (len(SEPARATION_BUCKETS) + 1)  # graph.separation_features
        self.encoder = SequenceEncoder(hidden, layers, heads, edge_dim, dropout)
        self.head = PairHead(hidden, channels, blocks, dropout)

    def first_graph(self, data):
        """The first pass's edges: the stored sequence graph, or none at all when only spatial edges are asked."""
        if "sequence" in self.edges:
            return data.edge_index, data.edge_attr
        return data.edge_index[:, :0], data.edge_attr[:0]

    def spatial_graph(self, edge_index, edge_attr, logits):
        """The first pass's edges plus the predicted spatial ones, coalesced, with their separation features
        (of the first graph's dtype and device: float32 whatever precision the logits came out in)."""
        from torch_geometric.utils import coalesce

        from pipelines.protein.graph import separation_features

        spatial = predicted_neighbours(logits, self.spatial_k)
        edge_index = coalesce(torch.cat([edge_index, spatial], 1), num_nodes=logits.shape[0])
        # graph.py's helpers build CPU tensors: compute there, then move beside the first graph's features
        return edge_index, separation_features(edge_index.cpu()).to(edge_attr.device, edge_attr.dtype)

    def encode(self, data) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the last pass's residue states (L, hidden), the distogram logits of every pass)."""
        edge_index, edge_attr = self.first_graph(data)
        h = self.encoder(data.x, edge_index, edge_attr)
        passes = [self.head(h)]
        if "spatial" in self.edges:
            edge_index, edge_attr = self.spatial_graph(edge_index, edge_attr, passes[0].detach())
            h = self.encoder(data.x, edge_index, edge_attr)
            passes.append(self.head(h))
        return h, passes

    def passes(self, data) -> list[torch.Tensor]:
        return self.encode(data)[1]

    def forward(self, data):
        return self.passes(data)[-1]


def distogram_loss(logits: torch.Tensor, labels: torch.Tensor, min_separation: int = 3) -> torch.Tensor:
    """Cross-entropy over pairs with a known distance and |i-j| >= min_separation (closer pairs are fixed by
    chain geometry and would dominate the loss)."""
    length = labels.shape[0]
    idx = torch.arange(length, device=labels.device)
    keep = ((idx[None, :] - idx[:, None]).abs() >= min_separation) & (labels >= 0)
    return nn.functional.cross_entropy(logits[keep], labels[keep])
