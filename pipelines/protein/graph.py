"""Proteins as PyTorch Geometric graphs: residues are nodes, sequence and spatial neighbours are edges.

Two graphs, for two questions:
- `sequence_graph`: what contact prediction may see (the structure is not an input at inference): edges join
  residues within `window` positions, and each edge carries its signed sequence separation (with
  `model.edges` holding "spatial", contacts.ContactNet adds edges to the contacts it predicted itself);
- `structure_graph`: what refinement sees (coordinates in): edges to the k nearest residues in space plus
  the sequence neighbours, with the distance as radial basis functions and the direction to the neighbour in
  the residue's local frame (N, Cα, C), which is invariant to rotating the whole protein.
Neighbours come from `torch.cdist` + `topk`: PyG's `knn_graph` needs pyg-lib (or torch-cluster), which has no
wheel for this torch on these machines (STACK.md). torch_geometric is imported inside functions: 3-6 s.
"""

from __future__ import annotations

import torch

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # index 20: anything else (X, U, O, B, Z)
SEPARATION_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # |i-j| edges: finer where local structure lives


def encode_sequence(sequence: str) -> torch.Tensor:
    """(L,) int64 residue types, 20 for a non-standard letter."""
    index = {aa: i for i, aa in enumerate(AMINO_ACIDS)}
    return torch.tensor([index.get(aa, 20) for aa in sequence.upper()], dtype=torch.long)


def node_features(sequence: str) -> torch.Tensor:
    """(L, 22): one-hot residue type (21) and the relative position along the chain (termini behave apart)."""
    types = encode_sequence(sequence)
    onehot = torch.nn.functional.one_hot(types, num_classes=21).float()
    position = torch.linspace(0.0, 1.0, len(sequence)).unsqueeze(1)
    return torch.cat([onehot, position], dim=1)


def sequence_edges(length: int, window: int) -> torch.Tensor:
    """(2, E) both directions between residues at most `window` apart (no self loops)."""
    i, j = torch.meshgrid(torch.arange(length), torch.arange(length), indexing="ij")
    keep = ((i - j).abs() <= window) & (i != j)
    return torch.stack([j[keep], i[keep]])  # PyG's order: row 0 source, row 1 target


def knn_edges(pos: torch.Tensor, k: int) -> torch.Tensor:
    """(2, L*k') edges from each residue's k nearest residues in space (k' = min(k, L-1))."""
    dist = torch.cdist(pos, pos)
    dist.fill_diagonal_(float("inf"))
    k = min(k, len(pos) - 1)
    neighbours = dist.topk(k, largest=False).indices  # (L, k)
    target = torch.arange(len(pos)).repeat_interleave(k)
    return torch.stack([neighbours.reshape(-1), target])


def separation_features(edge_index: torch.Tensor) -> torch.Tensor:
    """(E, 2 * (buckets + 1)): one-hot of the signed bucket of source - target, so N->C and C->N edges differ."""
    sep = edge_index[0] - edge_index[1]
    n = len(SEPARATION_BUCKETS) + 1
    bucket = torch.bucketize(sep.abs(), torch.tensor(SEPARATION_BUCKETS)) + n * (sep < 0)
    return torch.nn.functional.one_hot(bucket, num_classes=2 * n).float()


def rbf(distance: torch.Tensor, n: int = 16, max_angstrom: float = 20.0) -> torch.Tensor:
    """(E, n) Gaussian radial basis of distances, centres 0..max Å (a smooth, learnable-friendly encoding)."""
    centres = torch.linspace(0.0, max_angstrom, n)
    width = max_angstrom / n
    return torch.exp(-(((distance.unsqueeze(-1) - centres) / width) ** 2))


def local_frames(backbone: torch.Tensor) -> torch.Tensor:
    """(L, 3, 3) orthonormal frames (rows are axes) from N, Cα, C (L, 3, 3) by Gram-Schmidt."""
    n, ca, c = backbone[:, 0], backbone[:, 1], backbone[:, 2]
    e1 = torch.nn.functional.normalize(c - ca, dim=-1)
    u2 = n - ca
    e2 = torch.nn.functional.normalize(u2 - (u2 * e1).sum(-1, keepdim=True) * e1, dim=-1)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=1)


def sequence_graph(sequence: str, window: int = 8):
    """The contact task's input: a PyG Data with x (L, 22), edge_index and edge_attr (separation), no coordinates."""
    from torch_geometric.data import Data

    edge_index = sequence_edges(len(sequence), window)
    return Data(
        x=node_features(sequence),
        edge_index=edge_index,
        edge_attr=separation_features(edge_index),
        aa=encode_sequence(sequence),
        num_nodes=len(sequence),
    )


def structure_graph(sequence: str, backbone: torch.Tensor, k: int = 16, window: int = 2):
    """The refinement task's input: Data with pos (Cα), x, spatial kNN + sequence edges and geometric features.

    `backbone` is (L, 3, 3) N, Cα, C in Å with no NaN (the caller drops residues lacking them).
    """
    from torch_geometric.data import Data
    from torch_geometric.utils import coalesce

    pos = backbone[:, 1]
    edge_index = coalesce(torch.cat([knn_edges(pos, k), sequence_edges(len(sequence), window)], dim=1))
    source, target = edge_index
    vector = pos[source] - pos[target]
    distance = vector.norm(dim=-1)
    frames = local_frames(backbone)
    direction = torch.einsum("eij,ej->ei", frames[target], vector) / distance.clamp_min(1e-6).unsqueeze(-1)
    edge_attr = torch.cat([rbf(distance), direction, separation_features(edge_index)], dim=1)
    return Data(x=node_features(sequence), pos=pos, edge_index=edge_index, edge_attr=edge_attr, num_nodes=len(pos))
