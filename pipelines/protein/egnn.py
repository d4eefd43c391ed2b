"""Structure refinement with an E(n)-equivariant graph neural network (EGNN; Satorras, Hoogeboom & Welling 2021).

The task: given noisy Cα coordinates of a chain (a perturbed native here; a predicted or low-resolution model
in use), move every residue towards the native. A refiner must be *equivariant*: rotating, reflecting or
translating the input must move the output the same way, f(R x + t) = R f(x) + t, because the protein's
orientation in the file is arbitrary and carries no information. An ordinary network would have to learn
that from rotated copies (data augmentation, never exact); the EGNN has it by construction:

- node features h_i are built from invariants only (residue type, chain position, distances, sequence
  separation), so they do not change when the structure is moved;
- coordinates are changed only along the inter-residue vectors (x_i - x_j), weighted by invariant scalars;
  a sum of such vectors rotates, reflects and translates with the input.

One layer (`EGNNLayer`), for the edges j -> i of a graph:

    m_ij = φ_e(h_i, h_j, ||x_i - x_j||², a_ij)                     message, invariant
    x_i <- x_i + mean_j (x_i - x_j) / (||x_i - x_j|| + 1) φ_x(m_ij)  coordinate update, equivariant
    h_i <- h_i + φ_h(h_i, Σ_j m_ij)                                   feature update, invariant

`RefinementNet` embeds `graph.node_features` (one-hot residue type + relative position), builds a graph from
the *input* coordinates (each residue's k nearest residues in space plus its sequence neighbours, edges carrying
the signed sequence separation, `graph.separation_features`), runs the layers and returns the last layer's
coordinates: the input plus the predicted displacement. `perturb` makes the training inputs (Gaussian noise on
the native), `refinement_loss` the objective, `superposed_rmsd` (Kabsch) the evaluation.

Edge inputs are rotation-invariant scalars only: `graph.structure_graph`'s edge_attr also holds directions in
local residue frames, which are invariant too, but they need N and C (this net sees Cα only) and would tie the
coordinate update to frames the layers do not move.

torch_geometric is imported at module level here (3-6 s), unlike graph.py: `EGNNLayer` subclasses its
MessagePassing, so the base class must exist when the class is defined, and only training code imports this
module (the CLI, data stages and graph building never do).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import MeanAggregation, SumAggregation
from torch_geometric.utils import coalesce

from pipelines.protein.graph import knn_edges, node_features, separation_features, sequence_edges

N_NODE_FEATURES = 22  # graph.node_features: 21 residue types + relative chain position
N_EDGE_FEATURES = 26  # graph.separation_features: 2 * (12 buckets + 1), signed
N_RBF = 16  # radial basis centres over 0-20 Å: the MLP can tell 3.8 Å bonded from 5-6 Å packed neighbours
RBF_MAX = 20.0  # Å, beyond the 16th nearest neighbour in a compact chain (10 Å median, 13 Å max in 107L)
DISTANCE_SCALE = 10.0  # Å: ||x_i - x_j||² enters as (d / 10 Å)², O(1) for a linear layer


def radial_features(distance: torch.Tensor) -> torch.Tensor:
    """(E, 1 + N_RBF): the paper's squared distance (rescaled) and a Gaussian basis of the distance."""
    centres = torch.linspace(0.0, RBF_MAX, N_RBF, device=distance.device, dtype=distance.dtype)
    width = RBF_MAX / N_RBF
    basis = torch.exp(-(((distance.unsqueeze(-1) - centres) / width) ** 2))
    return torch.cat([(distance.unsqueeze(-1) / DISTANCE_SCALE) ** 2, basis], dim=-1)


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """Two-layer SiLU MLP, the φ of the paper (SiLU: smooth, so coordinates change smoothly with the input)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class EGNNLayer(MessagePassing):
    """One E(n)-equivariant layer: (h, x) -> (h', x'), h invariant, x equivariant (module docstring)."""

    def __init__(self, hidden: int, edge_dim: int = N_EDGE_FEATURES):
        # aggr=None: messages need two reductions (sum for features, mean for coordinates), done in `aggregate`
        super().__init__(aggr=None)
        self.hidden = hidden
        self.phi_e = nn.Sequential(mlp(2 * hidden + 1 + N_RBF + edge_dim, hidden, hidden), nn.SiLU())
        self.phi_x = mlp(hidden, hidden, 1)
        self.phi_h = mlp(2 * hidden, hidden, hidden)
        # start near the identity map (as the authors' code, gain 0.001): an untrained refiner leaves the input alone
        nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=0.001)
        nn.init.zeros_(self.phi_x[-1].bias)
        self.sum_aggr = SumAggregation()
        self.mean_aggr = MeanAggregation()

    def forward(self, h: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor):
        """h (N, hidden), x (N, 3), edge_index (2, E) source -> target, edge_attr (E, edge_dim) invariant."""
        messages, shift = self.propagate(edge_index, h=h, x=x, edge_attr=edge_attr)
        h = h + self.phi_h(torch.cat([h, messages], dim=-1))  # residual: a deep stack stays trainable
        return h, x + shift

    def message(self, h_i, h_j, x_i, x_j, edge_attr):
        vector = x_i - x_j  # the only equivariant quantity a message may use
        distance = vector.norm(dim=-1)
        m = self.phi_e(torch.cat([h_i, h_j, radial_features(distance), edge_attr], dim=-1))
        # / (d + 1): a raw (x_i - x_j) grows with distance, so a far neighbour would push hardest and steps blow
        # up over layers; dividing by d bounds each push by |φ_x|, and + 1 avoids 0/0 for coinciding residues
        # (Satorras et al.'s normalised variant; Hoogeboom et al. 2022, equivariant diffusion, use d + 1)
        push = vector / (distance.unsqueeze(-1) + 1.0) * self.phi_x(m)
        return torch.cat([m, push], dim=-1)  # one tensor, as MessagePassing's hooks and type hints assume

    def aggregate(self, inputs, index, ptr=None, dim_size=None):
        m, push = inputs.split([self.hidden, 3], dim=-1)
        # sum for features (the paper's Σ_j m_ij); mean for coordinates: the step size must not grow with degree,
        # which varies (k spatial + up to 2 * window sequence neighbours, overlapping)
        summed = self.sum_aggr(m, index, ptr=ptr, dim_size=dim_size)
        return summed, self.mean_aggr(push, index, ptr=ptr, dim_size=dim_size)

    def update(self, inputs):
        return inputs


def refinement_edges(pos: torch.Tensor, k: int, window: int, ptr: torch.Tensor | None = None) -> torch.Tensor:
    """(2, E) each residue's k nearest residues in space plus those within `window` in sequence, per chain.

    Built with `graph.knn_edges` (torch.cdist + topk: PyG's knn_graph needs pyg-lib, unavailable here), on the CPU
    (graph.py's helpers make CPU index tensors) and without gradient (neighbour choice is discrete). `ptr` (from a
    PyG Batch) keeps chains apart; the sequence edges keep the chain connected whatever the noise does.
    """
    points = pos.detach().cpu()
    bounds = ptr.tolist() if ptr is not None else [0, len(points)]
    parts = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end - start > 1:
            parts += [knn_edges(points[start:end], k) + start, sequence_edges(end - start, window) + start]
    edge_index = torch.cat(parts, dim=1) if parts else torch.empty(2, 0, dtype=torch.long)
    return coalesce(edge_index, num_nodes=len(points)).to(pos.device)


class RefinementNet(nn.Module):
    """Noisy Cα (data.pos) + residue features (data.x) -> refined Cα, E(3)-equivariant in data.pos."""

    def __init__(self, hidden: int = 64, layers: int = 4, k: int = 16, window: int = 2):
        # hidden 64 / 4 layers: ~130k parameters, enough for one-chain tests and ~200-chain sets, cheap on a CPU
        # k 16: the first shell of packed residues (contacts within ~10 Å), as graph.structure_graph's default
        # window 2: bonded (i±1) and i±2 neighbours always present, so chain geometry is learnt even under big noise
        super().__init__()
        self.k, self.window = k, window
        self.embed = nn.Linear(N_NODE_FEATURES, hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden) for _ in range(layers))

    def graph(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges from the input coordinates (kept for every layer: the moves are small) and their features."""
        edge_index = refinement_edges(data.pos, self.k, self.window, getattr(data, "ptr", None))
        edge_attr = separation_features(edge_index.cpu()).to(data.pos.device, data.pos.dtype)
        return edge_index, edge_attr

    def encode(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, pos): the final invariant node features and the refined coordinates."""
        edge_index, edge_attr = self.graph(data)
        h, x = self.embed(data.x.to(data.pos.dtype)), data.pos
        for layer in self.layers:
            h, x = layer(h, x, edge_index, edge_attr)
        return h, x

    def forward(self, data) -> torch.Tensor:
        """(N, 3) refined Cα: data.pos plus the displacement summed over the layers."""
        return self.encode(data)[1]


def refinement_input(sequence: str, ca: torch.Tensor):
    """The net's input for one chain: Data(x = graph.node_features, pos = Cα (L, 3) in Å)."""
    return Data(x=node_features(sequence), pos=ca, num_nodes=len(ca))


def perturb(ca: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Native Cα plus isotropic Gaussian noise of `sigma` Å per coordinate; the same seed gives the same copy.

    The expected RMSD of the copy is sigma * sqrt(3) (a little less after superposition).
    """
    generator = torch.Generator().manual_seed(seed)  # a private stream: the global RNG (dropout, init) stays put
    noise = torch.randn(ca.shape, generator=generator, dtype=ca.dtype)
    return ca + sigma * noise.to(ca.device)


def refinement_loss(
    pred: torch.Tensor,
    native: torch.Tensor,
    distance_weight: float = 1.0,
    cutoff: float = 15.0,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared coordinate error (Å²) plus `distance_weight` x mean squared error of the local distances.

    - coordinates are compared without superposition: input and target share a frame and the net is
      equivariant, so a superposition would only hide errors (its tiny irreducible part is the frame the noise
      itself shifts, ~sigma / sqrt(L));
    - the distance term scores what is frame-free and what refinement is judged on (bond lengths, packing): pairs
      closer than `cutoff` Å in the native (lDDT's 15 Å), so thousands of far, noise-dominated pairs do not drown
      the local geometry;
    - `batch` (PyG's node -> chain vector) keeps pairs within a chain.
    """
    coordinate = ((pred - native) ** 2).sum(dim=-1).mean()
    i, j = torch.triu_indices(len(native), len(native), offset=1, device=native.device)
    native_distance = (native[i] - native[j]).norm(dim=-1)
    keep = native_distance < cutoff
    if batch is not None:
        keep &= batch[i] == batch[j]
    i, j = i[keep], j[keep]
    # pairs i < j only: no zero distance, whose norm has no gradient
    pred_distance = (pred[i] - pred[j]).norm(dim=-1)
    return coordinate + distance_weight * ((pred_distance - native_distance[keep]) ** 2).mean()


def superposed_rmsd(model: torch.Tensor, reference: torch.Tensor) -> float:
    """Cα RMSD (Å) after the optimal rigid superposition of `model` onto `reference` (Kabsch 1976).

    Both are (L, 3) with rows paired. Centre both; the rotation maximising overlap comes from the SVD of the
    3x3 covariance, H = A^T B = U S V^T, R = V diag(1, 1, d) U^T with d = sign(det(V U^T)) so that R is a proper
    rotation (no mirror image). Computed in float64 without gradient: an evaluation metric, deterministic.
    """
    a = model.detach().double().cpu()
    b = reference.detach().double().cpu()
    a, b = a - a.mean(dim=0), b - b.mean(dim=0)
    u, _, vt = torch.linalg.svd(a.T @ b)
    d = torch.sign(torch.linalg.det(vt.T @ u.T))
    rotation = vt.T @ torch.diag(torch.tensor([1.0, 1.0, d.item()], dtype=torch.float64)) @ u.T
    return float(((a @ rotation.T - b) ** 2).sum(dim=-1).mean().sqrt())
