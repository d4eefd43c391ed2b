"""The prepared protein data: chains read once, split by sequence cluster, stored as a PyG dataset per split.

prepare reads every structure (structure.read_structure), keeps one copy of identical chains within an
entry (a homodimer's two chains are one example, not two), splits by 40 %-identity cluster
(clusters.leak_free_split) and writes, per split, a PyG `InMemoryDataset` file: one `Data` per chain with its
sequence graph (graph.sequence_graph: what the contact model sees) and its coordinates (what the losses and
metrics compare with). Distogram labels are not stored: they are an (L, L) function of the coordinates,
cheaper to recompute than to keep (geometry.distogram_labels).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pipelines.protein.structure import Chain, StructureError, read_structure

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")


def structure_files(folder: Path) -> list[Path]:
    """Every structure file under `folder` (sorted, so the dataset is the same on every machine)."""
    files = [p for p in Path(folder).rglob("*") if p.is_file() and p.name.lower().endswith(STRUCTURE_SUFFIXES)]
    if not files:
        raise FileNotFoundError(f"{folder}: no structure file ({', '.join(STRUCTURE_SUFFIXES)})")
    return sorted(files)


def read_chains(files: list[Path], min_length: int, max_length: int) -> tuple[list[Chain], list[dict]]:
    """The usable chains of `files`, and one row per chain left out (file, chain, reason)."""
    chains, skipped = [], []
    for path in files:
        try:
            found = read_structure(path, min_length=min_length)
        except StructureError as err:
            skipped.append({"file": path.name, "chain": "", "reason": str(err)})
            continue
        seen: set[str] = set()
        for chain in found:
            if chain.sequence in seen:  # a homo-oligomer's copies: one example, not several
                skipped.append({"file": path.name, "chain": chain.chain_id, "reason": "identical to another chain"})
            elif chain.length > max_length:
                skipped.append({"file": path.name, "chain": chain.chain_id, "reason": f"longer than {max_length}"})
            else:
                seen.add(chain.sequence)
                chains.append(chain)
    return chains, skipped


def chain_name(chain: Chain) -> str:
    return f"{chain.entry}_{chain.chain_id}"


def sequences_of(chains: list[Chain]) -> dict[str, str]:
    """{ENTRY_CHAIN: sequence}: what the cluster split and the leak check read."""
    return {chain_name(c): c.sequence for c in chains}


def to_data(chain: Chain, window: int):
    """One chain as a PyG Data: its sequence graph plus coordinates (Å) and names."""
    import torch

    from pipelines.protein.geometry import representative_atoms
    from pipelines.protein.graph import sequence_graph

    data = sequence_graph(chain.sequence, window)
    # stored compactly (one-hot features as uint8, positions as float16: 4x smaller on disk); the loaders
    # turn them back into float32 (data.as_float)
    data.x, data.edge_attr = data.x.to(torch.float16), data.edge_attr.to(torch.uint8)
    data.points = torch.from_numpy(representative_atoms(chain.coords, chain.sequence))  # Cβ / virtual Cβ / Cα
    data.backbone = torch.from_numpy(np.ascontiguousarray(chain.coords[:, :3]))  # N, Cα, C (NaN if missing)
    data.name, data.sequence = chain_name(chain), chain.sequence
    return data


def build(
    chains: list[Chain], split_of: dict[str, str], out: Path, window: int, splits=("train", "val", "test")
) -> dict:
    """Write <split>.pt (PyG InMemoryDataset files) into `out`; return counts, sizes and the build time."""
    from torch_geometric.data import InMemoryDataset

    start = time.perf_counter()
    summary = {}
    for split in splits:
        items = [to_data(c, window) for c in chains if split_of.get(chain_name(c)) == split]
        if not items:
            raise ValueError(f"the {split} split has no chain: too few clusters for the split fractions")
        InMemoryDataset.save(items, str(out / f"{split}.pt"))
        summary[split] = {
            "chains": len(items),
            "residues": int(sum(d.num_nodes for d in items)),
            "bytes": (out / f"{split}.pt").stat().st_size,
        }
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (out / "splits.json").write_text(json.dumps(split_of, indent=1, sort_keys=True) + "\n")
    return summary


class ChainGraphs:
    """A split's chains as a list of PyG Data (the InMemoryDataset file written by `build`)."""

    def __init__(self, path: Path):
        from torch_geometric.data import InMemoryDataset

        class _Stored(InMemoryDataset):
            def __init__(self, file: str):
                super().__init__(root=None)
                self.load(file)

        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no prepared split (run the prepare stage)")
        self.dataset = _Stored(str(path))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]
