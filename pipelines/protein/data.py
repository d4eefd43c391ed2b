"""From raw structure files to the splits the contact model trains on: rules, checks, prepare, loaders.

The rules (applied identically by validate and prepare, and counted in their reports): a file that cannot be
read as protein fails validation (naming the file and the reason: a download that is an HTML error page
must not become a silent gap); chains outside [min_length, max_length] observed residues, worse than
max_resolution, or with less than min_observed of their SEQRES observed are dropped; identical chains of one
entry (homo-oligomers) count once. Great Expectations then checks the kept chains' table: the ranges, unique
names, standard residues and a plausible backbone (consecutive Cα 2.8-4.2 Å apart where no break is flagged).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from components.steps import SplitLoaders, loader_options
from pipelines.protein.dataset import chain_name, read_chains, sequences_of, structure_files
from pipelines.protein.structure import Chain

HELDOUT = "heldout"  # raw/heldout/: the test structures given by data.test_dir (never trained or selected on)


KEPT = "kept.txt"  # a pulled folder that keeps only some of its files (AFDB's pLDDT filter) lists them here


def write_kept(folder: Path, kept: list[Path]) -> list[Path]:
    """Name the files of `folder` that count (the others stay on disk so a re-pull does not fetch them again)."""
    if not kept:
        raise ValueError(f"{folder}: no model passes the filter (protein.data.min_plddt)")
    (folder / KEPT).write_text("".join(f"{Path(p).name}\n" for p in kept))
    return [Path(p) for p in kept]


def raw_files(raw: Path) -> tuple[list[Path], list[Path]]:
    """(pool files, held-out files) under raw/; in a folder with a kept.txt, only the files it names."""
    kept = {listing.parent: set(listing.read_text().split()) for listing in raw.rglob(KEPT)}
    files = [f for f in structure_files(raw) if f.parent not in kept or f.name in kept[f.parent]]
    held = [f for f in files if HELDOUT in f.relative_to(raw).parts[:-1]]
    return [f for f in files if f not in held], held


def kept_chains(files: list[Path], data) -> tuple[list[Chain], list[dict]]:
    """The chains the rules keep, and one row per chain or file left out, with the reason."""
    chains, skipped = read_chains(files, data.min_length, data.max_length)
    kept = []
    for chain in chains:
        if chain.resolution is not None and chain.resolution > data.max_resolution:
            reason = f"resolution {chain.resolution:.2f} Å above {data.max_resolution}"
        elif chain.observed_fraction < data.min_observed:
            reason = f"only {chain.observed_fraction:.0%} of SEQRES observed"
        else:
            kept.append(chain)
            continue
        skipped.append({"file": chain.entry, "chain": chain.chain_id, "reason": reason})
    return kept, skipped


def chain_frame(chains: list[Chain]):
    """One row per chain, indexed by its name (ENTRY_CHAIN): what validation checks and reports by name."""
    import pandas as pd

    rows = []
    for c in chains:
        step = np.linalg.norm(np.diff(c.coords[:, 1], axis=0), axis=1)
        bonded = ~c.breaks[1:]
        rows.append(
            {
                "name": chain_name(c),
                "length": c.length,
                "resolution": c.resolution,
                "observed_fraction": c.observed_fraction,
                "nonstandard_share": sum(aa not in "ACDEFGHIKLMNPQRSTVWY" for aa in c.sequence) / c.length,
                "bad_ca_steps": int(((step[bonded] < 2.8) | (step[bonded] > 4.2)).sum()),
            }
        )
    return pd.DataFrame(rows).set_index("name", drop=False)


def checks(raw: Path, data) -> list:
    import great_expectations as gx

    from components.validate import Check, read_failure

    pool, held = raw_files(raw)
    checks = []
    for name, files in (("pool", pool), (HELDOUT, held)):
        if not files:
            continue
        chains, skipped = kept_chains(files, data)
        unreadable = [s for s in skipped if not s["chain"] and "identical" not in s["reason"]]
        if unreadable:
            first = unreadable[0]
            raise read_failure(f"protein {name} structures", raw / first["file"], first["reason"])
        if not chains:
            raise read_failure(f"protein {name} structures", raw, "no chain passes the length/quality rules")
        frame = chain_frame(chains)
        suite = gx.ExpectationSuite(
            name=f"protein-{name}-chains",
            expectations=[
                gx.expectations.ExpectColumnValuesToBeUnique(column="name"),
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column="length", min_value=data.min_length, max_value=data.max_length
                ),
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column="resolution", min_value=0.0, max_value=data.max_resolution
                ),
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column="observed_fraction", min_value=data.min_observed, max_value=1.0
                ),
                gx.expectations.ExpectColumnValuesToBeBetween(column="nonstandard_share", max_value=0.1),
                gx.expectations.ExpectColumnValuesToBeBetween(column="bad_ca_steps", max_value=2),
                gx.expectations.ExpectTableRowCountToBeBetween(min_value=3),
            ],
        )
        checks.append(Check(f"protein {name} chains", raw, frame, suite))
    return checks


def prepare(raw: Path, data, model, seed: int, out: Path) -> dict:
    """Cluster split of the pool (held-out files, if any, are the test split) and the PyG dataset files."""
    from pipelines.protein.clusters import split_with_heldout
    from pipelines.protein.dataset import build

    pool_files, held_files = raw_files(raw)
    pool, skipped = kept_chains(pool_files, data)
    held, held_skipped = kept_chains(held_files, data) if held_files else ([], [])
    fractions = {"val": data.val_fraction, "test": data.test_fraction}
    split_of, report = split_with_heldout(
        sequences_of(pool), sequences_of(held), out / "mmseqs", fractions, seed, data.min_identity
    )
    held_names = set(sequences_of(held))
    chains = [c for c in pool if chain_name(c) not in held_names] + held  # an entry in both counts as test only
    summary = build(chains, split_of, out, model.window)
    (out / "meta.json").write_text(json.dumps({"window": model.window, "min_identity": data.min_identity}) + "\n")
    (out / "chains.json").write_text(json.dumps(chain_frame(chains).to_dict(orient="records"), indent=1) + "\n")
    shutil.rmtree(out / "mmseqs", ignore_errors=True)  # scratch files of MMseqs2, not part of the dataset
    return {
        **summary,
        "clusters": report,
        "dropped": len(skipped) + len(held_skipped),
        "dropped_examples": (skipped + held_skipped)[:20],
        "test_from": "test_dir" if held else "cluster split",
    }


def crop(data, size: int, rng: np.random.Generator):
    """A contiguous window of at most `size` residues (training memory grows as L^2)."""
    from pipelines.protein.graph import sequence_graph

    length = data.num_nodes
    if length <= size:
        return data
    start = int(rng.integers(0, length - size + 1))
    window = sequence_graph(data.sequence[start : start + size], int(data.window))
    window.points = data.points[start : start + size]
    window.backbone = data.backbone[start : start + size]
    window.name, window.sequence, window.window = data.name, data.sequence[start : start + size], data.window
    return window


def as_float(data):
    """Features back to float32 after the compact storage of dataset.to_data."""
    data.x, data.edge_attr = data.x.float(), data.edge_attr.float()
    return data


def with_labels(data):
    """Attach the (L, L) distogram labels computed from the chain's representative atoms."""
    import torch

    from pipelines.protein.geometry import distances, distogram_labels

    data.labels = torch.from_numpy(distogram_labels(distances(data.points.numpy())))
    return data


class ChainSplit:
    """A map-style dataset over a split's chains: labelled, and cropped when training.

    `rebuild`: the stored sequence graphs were built with another window than `window` (a `model.window`
    variant over the same prepared data), so each chain's graph is rebuilt from its sequence (milliseconds).
    """

    def __init__(self, chains, window: int, crop_size: int | None, seed: int, rebuild: bool = False):
        self.chains, self.window, self.crop_size, self.rebuild = chains, window, crop_size, rebuild
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.chains)

    def __getitem__(self, i: int):
        from pipelines.protein.graph import sequence_graph

        data = as_float(self.chains[i])
        data.window = self.window
        if self.crop_size:
            data = crop(data, self.crop_size, self.rng)  # rebuilds the cropped graph with self.window anyway
        elif self.rebuild:
            graph = sequence_graph(data.sequence, self.window)
            data.edge_index, data.edge_attr = graph.edge_index, graph.edge_attr
        return with_labels(data)


class ProteinData(SplitLoaders):
    """The prepared splits; one chain per batch (pair maps differ in size), training chains randomly cropped."""

    def __init__(self, prepared: Path, crop_size: int, seed: int, num_workers: int = 0, window: int | None = None):
        from pipelines.protein.dataset import ChainGraphs

        self.prepared = Path(prepared)
        self.crop_size, self.seed, self.num_workers = crop_size, seed, num_workers
        self.splits = {s: ChainGraphs(self.prepared / f"{s}.pt") for s in ("train", "val", "test")}
        stored = json.loads((self.prepared / "meta.json").read_text())["window"]
        # the graph window the model trains with: `model.window` (None: the one prepare stored the graphs with)
        self.window = stored if window is None else window
        self.rebuild = self.window != stored

    def items(self, split: str) -> ChainSplit:
        """The split's whole chains, labelled (evaluation reads them uncropped)."""
        return ChainSplit(self.splits[split], self.window, None, self.seed, self.rebuild)

    def loader(self, split: str, train: bool):
        from torch.utils.data import DataLoader

        crop_size = self.crop_size if train else None
        chains = ChainSplit(self.splits[split], self.window, crop_size, self.seed, self.rebuild)
        # batch_size=None: no collation, each item is one chain's Data
        return DataLoader(chains, batch_size=None, shuffle=train, **loader_options(self.num_workers))
