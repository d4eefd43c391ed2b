"""Cluster splits: MMseqs2 at 40 % identity, whole clusters per split, and no test chain >= 40 % identical to
a training chain by an independent Smith-Waterman (biotite, BLOSUM62, identity over the shorter chain)."""

from __future__ import annotations

import random

import pytest

from pipelines.protein.clusters import ClusteringError, assign, leak_free_split

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def sw_identity(a: str, b: str) -> float:
    import biotite.sequence as bseq
    import biotite.sequence.align as align

    matrix = align.SubstitutionMatrix.std_protein_matrix()
    best = align.align_optimal(
        bseq.ProteinSequence(a), bseq.ProteinSequence(b), matrix, gap_penalty=(-10, -1), local=True, max_number=1
    )[0]
    return align.get_sequence_identity(best, mode="shortest")


def assert_no_cross_split_homologue(sequences: dict[str, str], split_of: dict[str, str], threshold: float = 0.4):
    train = {sequences[c] for c, s in split_of.items() if s == "train"}
    held = {sequences[c] for c, s in split_of.items() if s != "train"}
    worst = max((sw_identity(h, t), h[:12], t[:12]) for h in held for t in train)
    assert worst[0] < threshold, f"a held-out chain is {worst[0]:.0%} identical to a training chain: {worst[1:]}"


def families(n_families: int = 8, members: int = 4, length: int = 90, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    out = {}
    for f in range(n_families):
        root = [rng.choice(AMINO) for _ in range(length)]
        for m in range(members):
            mutant = [rng.choice(AMINO) if rng.random() < 0.2 else aa for aa in root]  # ~80 % identical
            out[f"F{f}_{m}"] = "".join(mutant)
    return out


def test_whole_families_go_to_one_split_and_nothing_leaks(tmp_path):
    sequences = families()
    split_of, report = leak_free_split(sequences, tmp_path, {"val": 0.15, "test": 0.25}, seed=0)
    for f in range(8):
        assert len({split_of[f"F{f}_{m}"] for m in range(4)}) == 1, f"family {f} was split"
    assert report["chains"]["test"] > 0 and report["chains"]["val"] > 0
    assert_no_cross_split_homologue(sequences, split_of)


def test_a_pair_the_clustering_separates_is_merged_by_the_alignment_check(tmp_path):
    # two chains sharing a 60-residue core (100 % identical there) with different 80-residue tails: at 50 %
    # coverage MMseqs2 may cluster them apart, but they are 60/140 = 43 % identical over the shorter chain
    rng = random.Random(1)
    core = "".join(rng.choice(AMINO) for _ in range(60))
    tail = lambda: "".join(rng.choice(AMINO) for _ in range(80))  # noqa: E731
    sequences = {"A": core + tail(), "B": tail() + core, **families(6, 3, seed=2)}
    split_of, _ = leak_free_split(sequences, tmp_path, {"val": 0.2, "test": 0.3}, seed=3)
    assert split_of["A"] == split_of["B"]
    assert_no_cross_split_homologue(sequences, split_of)


def test_a_family_too_big_for_the_test_share_trains():
    groups = {"big": [f"b{i}" for i in range(45)], **{f"g{i}": [f"g{i}"] for i in range(50)}}
    split_of = assign(groups, {"val": 0.1, "test": 0.2}, seed=0)
    assert {split_of[f"b{i}"] for i in range(45)} == {"train"}
    assert sum(s == "test" for s in split_of.values()) <= 0.2 * 95 + 1


def test_a_zero_share_gets_no_chain():
    groups = {f"g{i}": [f"g{i}"] for i in range(20)}
    split_of = assign(groups, {"val": 0.2, "test": 0.0}, seed=0)
    assert "test" not in split_of.values() and "val" in split_of.values()


def test_missing_mmseqs_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusteringError, match="apt-get install -y mmseqs2"):
        leak_free_split({"A": "ACDEFGHIKL" * 3}, tmp_path, {"val": 0.1, "test": 0.2})


def test_real_entries_split_by_cluster_without_leak(shared_data, tmp_path):
    """The 195 shared entries: 45 T4 lysozymes and the rest; held-out chains checked against every train chain.

    Chains under 30 residues are out, as in params.yaml (protein.data.min_length): over a 21-residue insulin A
    chain, chance local alignments reach 40 % identity over the shorter chain.
    """
    from pipelines.protein.structure import read_structure

    sequences = {}
    for path in sorted((shared_data / "protein").glob("*.pdb.gz")):
        for chain in read_structure(path, min_length=30):
            sequences[f"{chain.entry}_{chain.chain_id}"] = chain.sequence
    split_of, report = leak_free_split(sequences, tmp_path, {"val": 0.1, "test": 0.2}, seed=0)
    assert report["chains"]["test"] >= 0.1 * len(sequences)
    assert_no_cross_split_homologue(sequences, split_of)
