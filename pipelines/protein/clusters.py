"""Splits by sequence cluster, never by entry: MMseqs2 at 40 % identity, then an alignment check across splits.

Why: 45 of the shared entries are T4 lysozyme mutants; a split by entry would test on proteins the model has
seen with one residue changed. MMseqs2 (`easy-cluster`) groups chains at `min_identity`; whole clusters go to
train, val or test. Clustering is a heuristic (a pair can land in two clusters yet align above the threshold,
e.g. under the coverage rule), so the split is then checked by alignment the way the shared set's SOURCE.md
defines identity: identical aligned residues over the length of the shorter chain (`mmseqs easy-search`,
exhaustive). Clusters joined by such a pair are merged and the split redrawn, until no test or val chain
reaches `min_identity` with any train chain. tests/protein checks the result again with biotite's
Smith-Waterman.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

SPLITS = ("train", "val", "test")


class ClusteringError(RuntimeError):
    pass


def _mmseqs() -> str:
    path = shutil.which("mmseqs")
    if path is None:
        raise ClusteringError("MMseqs2 is not installed (`mmseqs` not on PATH): apt-get install -y mmseqs2")
    return path


def _run(args: list[str], workdir: Path) -> None:
    proc = subprocess.run([_mmseqs(), *args], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ClusteringError(f"mmseqs {args[0]} failed ({proc.returncode}): {' | '.join(tail)}")


def write_fasta(sequences: dict[str, str], path: Path) -> Path:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in sequences.items()))
    return path


def cluster(sequences: dict[str, str], workdir: Path, min_identity: float = 0.4, coverage: float = 0.5) -> dict:
    """{chain: representative}: MMseqs2 clusters at `min_identity` (alignment coverage >= `coverage`)."""
    workdir = workdir.resolve()  # mmseqs runs inside workdir: relative paths would point below it
    workdir.mkdir(parents=True, exist_ok=True)
    fasta = write_fasta(sequences, workdir / "chains.fasta")
    _run(
        [
            "easy-cluster",
            str(fasta),
            str(workdir / "clusters"),
            str(workdir / "tmp"),
            "--min-seq-id",
            str(min_identity),
            "-c",
            str(coverage),
            "--threads",
            "2",
            "-v",
            "1",
        ],
        workdir,
    )
    members = {}
    for line in (workdir / "clusters_cluster.tsv").read_text().splitlines():
        representative, member = line.split("\t")
        members[member] = representative
    missing = set(sequences) - set(members)
    if missing:
        raise ClusteringError(f"mmseqs left {len(missing)} chain(s) unclustered, e.g. {sorted(missing)[:3]}")
    return members


def cross_identity(query: dict[str, str], target: dict[str, str], workdir: Path) -> list[tuple[str, str, float]]:
    """(query, target, identity) for every aligned pair: identical residues over the shorter chain's length."""
    if not query or not target:
        return []
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    hits = workdir / "hits.m8"
    _run(
        [
            "easy-search",
            str(write_fasta(query, workdir / "query.fasta")),
            str(write_fasta(target, workdir / "target.fasta")),
            str(hits),
            str(workdir / "tmp"),
            "--exhaustive-search",  # every pair is aligned: no prefilter may hide a homologue
            "-a",  # keep the backtrace: without it MMseqs2 reports nident as 0
            "-e",
            "1000",  # report weak hits too: identity over the shorter chain, not the E-value, decides a leak
            "--format-output",
            "query,target,nident,qlen,tlen",
            "--threads",
            "2",
            "-v",
            "1",
        ],
        workdir,
    )
    out = []
    for line in hits.read_text().splitlines():
        q, t, nident, qlen, tlen = line.split("\t")
        out.append((q, t, int(nident) / min(int(qlen), int(tlen))))
    return out


def assign(groups: dict[str, list[str]], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """{chain: split}: whole groups, shuffled, into val then test while they fit their share, else train.

    A group that would overshoot a held-out share goes to train: the largest family (45 T4 lysozymes) would
    otherwise make the test set one protein.
    """
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    total = sum(len(m) for m in groups.values())
    split_of, filled = {}, dict.fromkeys(SPLITS, 0)
    for key in order:
        size = len(groups[key])
        fits = [s for s in ("val", "test") if fractions[s] > 0 and filled[s] + size <= max(1.0, fractions[s] * total)]
        name = fits[0] if fits else "train"
        filled[name] += len(groups[key])
        split_of.update(dict.fromkeys(groups[key], name))
    for name in ("val", "test"):  # a held-out split every group overshot gets the smallest training group
        train_groups = [k for k in order if split_of[groups[k][0]] == "train"]
        if fractions[name] > 0 and not filled[name] and len(train_groups) > 1:
            smallest = min(train_groups, key=lambda k: len(groups[k]))
            filled[name] += len(groups[smallest])
            split_of.update(dict.fromkeys(groups[smallest], name))
    return split_of


def split_with_heldout(
    pool: dict[str, str],
    held: dict[str, str],
    workdir: Path,
    fractions: dict[str, float],
    seed: int = 0,
    min_identity: float = 0.4,
) -> tuple[dict[str, str], dict]:
    """`leak_free_split` of `pool`; with `held` (an external test set, kept outside the repository) the pool
    gives train and val only, its chains >= `min_identity` to a held-out chain leave, and `held` is the test."""
    if not held:
        return leak_free_split(pool, workdir, fractions, seed, min_identity)
    split_of, report = leak_free_split(pool, workdir, {**fractions, "test": 0.0}, seed, min_identity)
    hits = cross_identity(pool, held, workdir / "heldout")
    # a homologue, or the very entry pulled on both sides (the same name)
    leaking = {q for q, _, ident in hits if ident >= min_identity} | (pool.keys() & held.keys())
    split_of = {name: split for name, split in split_of.items() if name not in leaking}
    split_of.update(dict.fromkeys(held, "test"))
    report["pool_chains_homologous_to_test_removed"] = len(leaking)
    report["chains"] = {s: sum(v == s for v in split_of.values()) for s in SPLITS}
    return split_of, report


def leak_free_split(
    sequences: dict[str, str],
    workdir: Path,
    fractions: dict[str, float],
    seed: int = 0,
    min_identity: float = 0.4,
) -> tuple[dict[str, str], dict]:
    """({chain: split}, report): cluster, assign whole clusters, merge clusters that still align across splits."""
    representative = cluster(sequences, workdir / "cluster", min_identity)
    parent = {r: r for r in set(representative.values())}

    def root(r: str) -> str:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    merges = 0
    for attempt in range(20):
        groups: dict[str, list[str]] = {}
        for chain, rep in representative.items():
            groups.setdefault(root(rep), []).append(chain)
        split_of = assign(groups, fractions, seed)
        train = {c: sequences[c] for c, s in split_of.items() if s == "train"}
        held = {c: sequences[c] for c, s in split_of.items() if s != "train"}
        leaks = [(q, t) for q, t, ident in cross_identity(held, train, workdir / "check") if ident >= min_identity]
        if not leaks:
            report = {
                "clusters_mmseqs": len(set(representative.values())),
                "groups_after_merge": len(groups),
                "merged_pairs": merges,
                "rounds": attempt + 1,
                "chains": {s: sum(v == s for v in split_of.values()) for s in SPLITS},
            }
            return split_of, report
        for q, t in leaks:
            a, b = root(representative[q]), root(representative[t])
            if a != b:
                parent[a] = b
                merges += 1
    raise ClusteringError(f"chains still align at >= {min_identity:.0%} across splits after 20 rounds of merging")
