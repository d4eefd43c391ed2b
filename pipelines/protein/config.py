"""The `protein` section of params.yaml, typed: every key, its default, its allowed values and why.

Choices are `Literal[...]`, ranges `bounded(default, ...)`, cross-field rules a `check()` raising
`Invalid(key, reason)`; components.config.build() enforces all three when params.yaml is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from components.config import Invalid, MonitorConfig, RegisterConfig, TrainConfig, TuneConfig, bounded

EDGE_TYPES = ("sequence", "spatial")  # model.edges: what contacts.ContactNet can pass messages over


@dataclasses.dataclass
class DataSection:
    # files: every structure in `structures_dir` (a folder); rcsb: `ids` / `ids_file` / `pisces` / `search` from
    # `mirror` (files.rcsb.org or a folder/URL with the same names); afdb: AlphaFold DB models of `accessions`
    # (pLDDT-filtered); demo: synthetic PDB/mmCIF (offline)
    source: Literal["files", "rcsb", "afdb", "demo"] = "files"
    structures_dir: str = "../shared/data/protein"  # files: a folder of .pdb/.cif[.gz]
    mirror: str = "https://files.rcsb.org/download"  # rcsb: where {ID}.cif.gz / {ID}.pdb.gz are
    fmt: Literal["cif", "pdb"] = "cif"  # rcsb: mmCIF (the archive's format; large entries exist only so) or PDB
    ids: list[str] = dataclasses.field(default_factory=list)  # rcsb: PDB ids
    ids_file: str = ""  # rcsb: a file of PDB ids, one per line (# comments)
    pisces: str = ""  # rcsb: a PISCES list; its chains filtered by the limits below give the ids
    search: str = ""  # rcsb: an RCSB Search API v2 query as JSON (paginated)
    accessions: list[str] = dataclasses.field(default_factory=list)  # afdb: UniProt accessions
    afdb_mirror: str = "https://alphafold.ebi.ac.uk/files/"  # afdb: or a folder / URL with AF-*-F1-model_v4.cif
    min_plddt: float = bounded(70.0, ge=0, le=100)  # afdb: models with a lower mean pLDDT are left out
    test_dir: str = ""  # a folder of held-out structures (outside the repository): the test split, reported
    max_resolution: float = bounded(3.0, gt=0)  # Å: worse entries are refused by validation
    max_r_factor: float = bounded(0.3, gt=0, le=1)  # PISCES filter
    min_length: int = bounded(30, ge=5)  # observed residues: shorter chains are peptides, not folds
    max_length: int = bounded(400, ge=10)  # the pair maps are L x L: longer chains are left out (a documented cap)
    min_observed: float = bounded(0.5, gt=0, le=1)  # observed / SEQRES residues: less is mostly disorder
    min_identity: float = bounded(0.4, gt=0, lt=1)  # MMseqs2 cluster threshold; no test chain reaches it with train
    val_fraction: float = bounded(0.1, gt=0, lt=0.5)  # share of chains (whole clusters) for validation
    test_fraction: float = bounded(0.2, gt=0, lt=0.5)  # share of chains (whole clusters) for test
    demo_entries: int = bounded(24, ge=6)  # entries the demo generator writes

    def check(self) -> None:
        if self.min_length >= self.max_length:
            raise Invalid("min_length", f"{self.min_length} is not below max_length ({self.max_length})")
        if self.source == "rcsb" and not (self.ids or self.ids_file or self.pisces or self.search):
            raise Invalid("ids", "source=rcsb needs ids, ids_file, pisces or search")
        if self.source == "afdb" and not self.accessions:
            raise Invalid("accessions", "source=afdb needs UniProt accessions")


@dataclasses.dataclass
class ModelSection:
    hidden: int = bounded(64, ge=8)  # residue embedding size
    layers: int = bounded(3, ge=1)  # TransformerConv rounds over the sequence graph
    heads: int = bounded(4, ge=1)  # attention heads (must divide hidden)
    window: int = bounded(8, ge=1)  # sequence-graph edges join residues at most this far apart (rebuilt at load)
    # which edges the message passing runs over (contacts.ContactNet): "sequence" (residues within `window`), and/or
    # "spatial" (each residue's `spatial_k` most likely contacts in the distogram a first pass predicted: the
    # true structure is not an input at inference). Sequence alone is today's network and the cheapest.
    edges: list[str] = dataclasses.field(default_factory=lambda: ["sequence"])
    spatial_k: int = bounded(16, ge=1)  # spatial edges per residue: the first shell of packed residues (egnn's k)
    channels: int = bounded(32, ge=4)  # pair-map channels of the 2-D head
    blocks: int = bounded(4, ge=1)  # dilated residual blocks of the 2-D head
    dropout: float = bounded(0.1, ge=0, lt=1)
    crop: int = bounded(128, ge=16)  # training crops of at most this many residues (memory is L^2)

    def check(self) -> None:
        if self.hidden % self.heads:
            raise Invalid("hidden", f"{self.hidden} is not divisible by heads ({self.heads})")
        if not self.edges or len(set(self.edges)) != len(self.edges) or set(self.edges) - set(EDGE_TYPES):
            raise Invalid("edges", f"{self.edges} is not a non-empty list of distinct {' / '.join(EDGE_TYPES)}")


@dataclasses.dataclass
class FoldSection:
    steps: int = bounded(300, ge=1)  # Adam steps minimising the distogram potential
    lr: float = bounded(0.2, gt=0)  # Å per step at first (Adam's step is ~lr): a fraction of a bond
    chains: int = bounded(3, ge=0)  # test chains the evaluate stage folds (TM-score, lDDT, RMSD); 0: none


@dataclasses.dataclass
class ProteinSection:
    data: DataSection
    model: ModelSection
    train: TrainConfig
    tune: TuneConfig
    register: RegisterConfig
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    fold: FoldSection = dataclasses.field(default_factory=FoldSection)
