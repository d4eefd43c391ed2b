"""Protein benchmark: contacts, folding and refinement on cluster-disjoint test chains, beside published numbers.

    python benchmarks/protein.py [--data ../shared/data/protein] [--test-dir PATH] [--seeds 0 1 2]
        [--epochs 30] [--limit 0] [--hidden 64] [--layers 3] [--channels 32] [--blocks 4] [--lr 1e-3]
        [--fold-chains 5] [--fold-steps 600] [--refine-steps 2000] [--device cpu|cuda] [--out FILE]

Protocol (the project's own modules, no MLflow, no DVC):
1. Data: every structure under --data (dataset.structure_files), chains of 30-400 observed residues, homo-oligomer
   copies once (dataset.read_chains). Split by 40 %-identity MMseqs2 clusters with the alignment leak check
   (clusters.leak_free_split: val 0.1, test 0.2 of the chains, --split-seed), one split for all seeds, so the
   spread over seeds is the training's. --test-dir: that folder's chains are the whole test set, the pool is split
   into train/val only and pool chains >= 40 % identical to a test chain are removed (clusters.cross_identity).
   The reported leak check re-aligns test and val against train (max identity over the shorter chain).
   --limit N keeps the first N chains of a fixed shuffle (random.Random(0)) of the pool: the sorted file list
   starts with nine T4 lysozymes, one cluster, which could not be split. A reduced protocol, stated in the output.
2. Contacts: contacts.ContactNet, AdamW (weight decay 1e-4), one chain per step, training chains randomly cropped
   to --crop residues (data.ChainSplit), --epochs epochs; the epoch kept is the one with the lowest validation
   distogram loss (whole chains); the test chains are never used for selection.
3. Test metrics: precision of the top L/5, L/2, L pairs per range (geometry.precision_table via
   evaluate.chain_tables), mean over test chains, for the model, the separation baseline and random scores.
4. Folding: the first --fold-chains test chains folded (folding.fold, --fold-steps Adam steps) from the predicted
   distogram, and from the true one (one-hot of the native's bins: what the folding step can reach at best);
   TM-score, Cα lDDT, Cα RMSD against the native Cα, mean over chains.
5. Refinement: egnn.RefinementNet trained --refine-steps steps (Adam, one perturbed train chain per step, a fresh
   σ = 1.5 Å copy each step); evaluated on one fixed perturbed copy of every test chain: Cα RMSD (Kabsch) and
   lDDT before and after.
Steps 2-5 run once per seed; the tables give mean ± sd over seeds (a single seed: its value). Published numbers
are quoted from shared/notes/BENCHMARKS.md; none of them was measured on these chains.
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.protein import geometry  # noqa: E402
from pipelines.protein.dataset import chain_name, read_chains, sequences_of, structure_files  # noqa: E402

MIN_LENGTH, MAX_LENGTH = 30, 400  # params.yaml's protein.data limits
MIN_IDENTITY = 0.4
FRACTIONS = {"val": 0.1, "test": 0.2}
WINDOW = 8  # params.yaml's protein.model.window: sequence-graph edges
WEIGHT_DECAY = 1e-4
SMEAR = np.array([0.1, 0.8, 0.1])  # the true distogram, spread to the neighbouring 0.5 Å bins
SIGMA = 1.5  # Å of Gaussian noise per coordinate for refinement
FULL_EPOCHS = 30  # params.yaml's protein.train.max_epochs: fewer is a reduced protocol
# shared/notes/BENCHMARKS.md, "Protein structure": long-range precision in % (top L unless said)
PUBLISHED_CONTACTS = [
    ("Gremlin (with MSAs), published", {"long/L": "39.3"}),
    ("ESM-1b, published", {"long/L": "41.1"}),
    ("ESM-2 15B, published", {"long/L": "54.5"}),
    ("CASP13 best groups, free modelling, published", {"long/L/5": "> 70"}),
    ("random, published", {"long/L/5": "about 1 to 2", "long/L/2": "about 1 to 2", "long/L": "about 1 to 2"}),
]
# same file: on a CAMEO set (ProteinBench), TM / lDDT / RMSD Å; with MSAs or language models, other chains
PUBLISHED_FOLDS = [
    ("AlphaFold2", 0.871, 0.900, 3.21),
    ("ESMFold", 0.847, 0.870, 3.98),
    ("EigenFold", 0.743, 0.737, 7.65),
]
GREMLIN_TOP_L = 0.393
MEASURED_ROWS = [
    ("model", "ContactNet (measured)"),
    ("separation", "separation baseline (measured)"),
    ("random", "random scores (measured)"),
]
SAME_FOLD_TM = 0.5  # BENCHMARKS.md: "above 0.5 for the same fold"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "protein"), help="folder of structures")
    p.add_argument("--test-dir", default="", help="a folder of held-out structures: the whole test set")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--split-seed", type=int, default=0, help="seed of the cluster split (one split for all seeds)")
    p.add_argument("--epochs", type=int, default=FULL_EPOCHS)
    p.add_argument("--limit", type=int, default=0, help="use only the first N pool chains (0: all); reduced protocol")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--crop", type=int, default=128, help="training crop, residues")
    p.add_argument("--fold-chains", type=int, default=5, help="test chains folded")
    p.add_argument("--fold-steps", type=int, default=600, help="Adam steps per fold (folding.fold's default)")
    p.add_argument("--refine-steps", type=int, default=2000, help="RefinementNet training steps (one chain each)")
    p.add_argument("--refine-lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", default="", help="also write the tables to this file")
    args = p.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device available")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- data


def load_pool(folder: Path, limit: int) -> tuple[list, list[dict], int]:
    """(chains, skipped rows, files read); with a limit, the first `limit` chains of a fixed shuffle."""
    files = structure_files(folder)
    chains, skipped = read_chains(files, MIN_LENGTH, MAX_LENGTH)
    if limit:
        random.Random(0).shuffle(chains)  # a fixed order, not the seed's: every seed sees the same chains
        chains = chains[:limit]
    return chains, skipped, len(files)


def split_chains(pool, held, workdir: Path, seed: int) -> tuple[dict[str, list], dict]:
    """{split: chains} and a report: cluster split of the pool, or the pool into train/val and `held` as test."""
    from pipelines.protein.clusters import split_with_heldout

    split_of, report = split_with_heldout(
        sequences_of(pool), sequences_of(held), workdir / "split", FRACTIONS, seed, MIN_IDENTITY
    )
    by_name = {chain_name(c): c for c in [*pool, *held]}
    splits = {s: [by_name[n] for n, v in split_of.items() if v == s] for s in ("train", "val", "test")}
    for name, chains in splits.items():
        if not chains:
            raise SystemExit(f"the {name} split has no chain: too few clusters (raise --limit)")
    report["max_identity_to_train"] = leak_check(splits, workdir / "check")
    return splits, report


def leak_check(splits: dict[str, list], workdir: Path) -> dict[str, float]:
    """Per held-out split, the highest identity (over the shorter chain) of any of its chains to a train chain;
    0.0 when MMseqs2 aligns no pair at all (even at E-value 1000)."""
    from pipelines.protein.clusters import cross_identity

    train = sequences_of(splits["train"])
    out = {}
    for name in ("val", "test"):
        hits = cross_identity(sequences_of(splits[name]), train, workdir / name)
        out[name] = max((ident for _, _, ident in hits), default=0.0)
    return out


def graphs(chains) -> list:
    from pipelines.protein.dataset import to_data

    return [to_data(c, WINDOW) for c in chains]


# ---------------------------------------------------------------------------------------------- contacts


def synchronize(device: str) -> None:
    """Wait for queued CUDA work, so that a timer reads the work and not its launch."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def on(data, device: str):
    """`data` on `device`; a copy there, since Data.to moves in place and the stored chains must stay on the CPU."""
    return data if device == "cpu" else data.clone().to(device)


def mean_loss(net, items, device: str) -> float:
    import torch

    from pipelines.protein.contacts import distogram_loss

    net.eval()
    with torch.no_grad():
        losses = [float(distogram_loss(net(d), d.labels)) for d in (on(items[i], device) for i in range(len(items)))]
    return float(np.mean(losses))


def train_contacts(args, seed: int, train, val) -> tuple[object, dict]:
    """ContactNet trained for args.epochs; the weights of the epoch with the lowest validation loss."""
    import torch

    from pipelines.protein.contacts import ContactNet, distogram_loss
    from pipelines.protein.data import ChainSplit

    torch.manual_seed(seed)
    net = ContactNet(hidden=args.hidden, layers=args.layers, channels=args.channels, blocks=args.blocks)
    net = net.to(args.device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=WEIGHT_DECAY)
    crops = ChainSplit(train, WINDOW, args.crop, seed)
    whole_val = ChainSplit(val, WINDOW, None, seed)
    order = np.random.default_rng(seed)
    best, history, seconds = None, [], 0.0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        net.train()
        for i in order.permutation(len(crops)):
            data = on(crops[int(i)], args.device)
            optimiser.zero_grad()
            loss = distogram_loss(net(data), data.labels)
            loss.backward()
            optimiser.step()
        synchronize(args.device)
        seconds += time.perf_counter() - start
        history.append(mean_loss(net, whole_val, args.device))
        if best is None or history[-1] < best[1]:
            best = (epoch, history[-1], copy.deepcopy(net.state_dict()))
        log(f"  seed {seed} epoch {epoch + 1}/{args.epochs}: val loss {history[-1]:.4f}")
    net.load_state_dict(best[2])
    steps = args.epochs * len(crops)
    return net.eval(), {
        "best_epoch": best[0] + 1,
        "val_loss": best[1],
        "train_s": seconds,
        "s_per_step": seconds / steps,
    }


class OnDevice:
    """The net as evaluate.chain_tables calls it (CPU Data in, CPU logits out), run on `device` and timed."""

    def __init__(self, net, device: str):
        self.net, self.device, self.seconds, self.calls = net, device, 0.0, 0

    def __call__(self, data):
        start = time.perf_counter()
        logits = self.net(on(data, self.device)).float().cpu()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return logits


def contact_rows(net, test, device: str, seed: int) -> tuple[list[dict], float]:
    """evaluate.chain_tables over the whole test chains, and the inference seconds per chain."""
    from pipelines.protein.data import ChainSplit
    from pipelines.protein.evaluate import chain_tables

    timed = OnDevice(net, device)
    rows = chain_tables(timed, ChainSplit(test, WINDOW, None, seed), seed)
    return rows, timed.seconds / max(timed.calls, 1)


# ---------------------------------------------------------------------------------------------- folding


def true_probs(dist: np.ndarray) -> np.ndarray:
    """(L, L, 37) the native's distogram bins, each smeared 0.1/0.8/0.1 over its neighbours with a 1e-3 floor
    (as tests/protein/test_folding.py); an unknown distance counts as "beyond 20 Å" (no information).

    Why not a pure one-hot: its spline is one narrow well between cliffs of -log(1e-4), and the trace can settle
    in the mirror fold (1MY7_A: TM 0.30, its mirror 0.90); smeared, the same chain folds to TM 0.93.
    """
    labels = geometry.distogram_labels(dist)
    labels[labels < 0] = 0
    onehot = np.eye(geometry.N_DISTOGRAM_BINS)[labels]
    probs = onehot.copy()
    probs[..., 1:] = np.apply_along_axis(np.convolve, -1, onehot[..., 1:], SMEAR, mode="same")
    probs += 1e-3  # no bin impossible, as with a softmax output
    return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


def fold_scores(probs: np.ndarray, native_ca: np.ndarray, steps: int, seed: int) -> dict[str, float]:
    from pipelines.protein.folding import ca_rmsd, fold, lddt, tm_score

    start = time.perf_counter()
    coords = fold(probs, len(native_ca), steps=steps, seed=seed).coords
    seconds = time.perf_counter() - start
    return {
        "tm": tm_score(coords, native_ca),
        "lddt": lddt(coords, native_ca),
        "rmsd": ca_rmsd(coords, native_ca),
        "s": seconds,
    }


def fold_chains(net, test, args, seed: int) -> dict[str, float]:
    """Mean fold scores over the first args.fold_chains test chains: from the net's distogram, or (net None)
    from the true one."""
    from pipelines.protein.evaluate import predict_probs

    scores = []
    for data in test[: args.fold_chains]:
        native = data.backbone[:, 1].numpy()
        if net is None:
            probs = true_probs(geometry.distances(data.points.numpy()))
        else:
            probs = predict_probs(OnDevice(net, args.device), data)
        scores.append(fold_scores(probs, native, args.fold_steps, seed))
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


# ---------------------------------------------------------------------------------------------- refinement


def refinement(args, seed: int, train, test) -> dict[str, float]:
    """RefinementNet trained on perturbed train chains; RMSD and lDDT before/after on perturbed test chains."""
    import torch

    from pipelines.protein.egnn import RefinementNet, perturb, refinement_input, refinement_loss, superposed_rmsd
    from pipelines.protein.folding import lddt

    torch.manual_seed(seed)
    net = RefinementNet().to(args.device)
    optimiser = torch.optim.Adam(net.parameters(), lr=args.refine_lr)
    pick = np.random.default_rng(seed)
    start = time.perf_counter()
    for step in range(args.refine_steps):
        data = train[int(pick.integers(len(train)))]
        native = data.backbone[:, 1]
        noisy = perturb(native, SIGMA, seed=seed * 1_000_003 + step)  # a fresh copy each step
        optimiser.zero_grad()
        loss = refinement_loss(net(refinement_input(data.sequence, noisy).to(args.device)), native.to(args.device))
        loss.backward()
        optimiser.step()
    synchronize(args.device)
    train_s = time.perf_counter() - start
    net.eval()
    before, after = [], []
    for i, data in enumerate(test):
        native = data.backbone[:, 1]
        noisy = perturb(native, SIGMA, seed=10_000 + i)  # the same test copies for every seed and run
        with torch.no_grad():
            refined = net(refinement_input(data.sequence, noisy).to(args.device)).cpu()
        before.append((superposed_rmsd(noisy, native), lddt(noisy.numpy(), native.numpy())))
        after.append((superposed_rmsd(refined, native), lddt(refined.numpy(), native.numpy())))
    return {
        "rmsd_before": float(np.mean([b[0] for b in before])),
        "lddt_before": float(np.mean([b[1] for b in before])),
        "rmsd_after": float(np.mean([a[0] for a in after])),
        "lddt_after": float(np.mean([a[1] for a in after])),
        "train_s": train_s,
    }


# ---------------------------------------------------------------------------------------------- one seed


def one_seed(args, seed: int, splits: dict[str, list]) -> dict:
    log(f"seed {seed}: contacts")
    net, training = train_contacts(args, seed, splits["train"], splits["val"])
    rows, infer_s = contact_rows(net, splits["test"], args.device, seed)
    tables = {src: geometry.mean_table([r[src] for r in rows]) for src in ("model", "separation", "random")}
    log(f"seed {seed}: folding {min(args.fold_chains, len(rows))} chain(s)")
    folded = fold_chains(net, splits["test"], args, seed)
    log(f"seed {seed}: refinement ({args.refine_steps} steps)")
    refined = refinement(args, seed, splits["train"], splits["test"])
    return {"seed": seed, **training, "infer_s": infer_s, "contacts": tables, "fold": folded, "refine": refined}


# ---------------------------------------------------------------------------------------------- tables


def mean_sd(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def metric_keys() -> list[str]:
    return [f"{r}/{t}" for r in geometry.RANGES for t in geometry.TOPS]


def contact_table(runs: list[dict], n_test: int) -> list[str]:
    keys = metric_keys()
    lines = [
        f"Contact precision (%), Cβ < 8 Å, top L/k pairs per range, mean over {n_test} test chains; "
        "measured rows: mean ± sd over seeds.",
        "",
        "| predictor | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for source, label in MEASURED_ROWS:
        cells = [mean_sd([r["contacts"][source].get(k) for r in runs], 100) for k in keys]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for label, published in PUBLISHED_CONTACTS:
        lines.append(f"| {label} | " + " | ".join(published.get(k, "") for k in keys) + " |")
    return lines


def fold_table(runs: list[dict], bound: dict[str, float], n_chains: int) -> list[str]:
    lines = [
        f"Folding (folding.fold, Cα trace) of the first {n_chains} test chain(s); mean over chains, ± sd over seeds.",
        "",
        "| distogram | TM-score | lDDT | Cα RMSD (Å) | fold s per chain |",
        "|---|---|---|---|---|",
    ]
    m = [r["fold"] for r in runs]
    lines.append(
        f"| predicted (ContactNet, measured) | {mean_sd([x['tm'] for x in m], digits=3)} "
        f"| {mean_sd([x['lddt'] for x in m], digits=3)} | {mean_sd([x['rmsd'] for x in m], digits=2)} "
        f"| {mean_sd([x['s'] for x in m])} |"
    )
    lines.append(
        f"| true (native bins: upper bound of the folding step, measured) | {bound['tm']:.3f} | {bound['lddt']:.3f} "
        f"| {bound['rmsd']:.2f} | {bound['s']:.1f} |"
    )
    for name, tm, lddt_value, rmsd in PUBLISHED_FOLDS:
        lines.append(f"| {name} (published, CAMEO set, ProteinBench) | {tm:.3f} | {lddt_value:.3f} | {rmsd:.2f} | |")
    lines.append("| unrelated structures (published) | about 0.17 | | | |")
    return lines


def refine_table(runs: list[dict], n_test: int, steps: int) -> list[str]:
    m = [r["refine"] for r in runs]
    return [
        f"Refinement (egnn.RefinementNet, {steps} training steps), σ = {SIGMA} Å perturbed copies of the "
        f"{n_test} test chains; mean over chains, ± sd over seeds.",
        "",
        "| Cα coordinates | Cα RMSD (Å) | lDDT | train s |",
        "|---|---|---|---|",
        f"| perturbed input | {mean_sd([x['rmsd_before'] for x in m], digits=3)} "
        f"| {mean_sd([x['lddt_before'] for x in m], digits=3)} | |",
        f"| refined (measured) | {mean_sd([x['rmsd_after'] for x in m], digits=3)} "
        f"| {mean_sd([x['lddt_after'] for x in m], digits=3)} | {mean_sd([x['train_s'] for x in m])} |",
    ]


def data_lines(args, info: dict, splits: dict[str, list], report: dict) -> list[str]:
    counts = "/".join(str(len(splits[s])) for s in ("train", "val", "test"))
    leak = report["max_identity_to_train"]
    test_from = f"--test-dir {args.test_dir}" if args.test_dir else "cluster split"
    lines = [
        f"Data: {info['files']} files in {args.data}, {info['pool']} pool chains of {MIN_LENGTH}-{MAX_LENGTH} residues "
        f"({info['skipped']} left out: too long, homo-oligomer copies or unreadable); chains train/val/test {counts} "
        f"(test from {test_from}); {report['clusters_mmseqs']} MMseqs2 clusters at {MIN_IDENTITY:.0%}, "
        f"{report['groups_after_merge']} groups after {report['merged_pairs']} leak merges, split seed {args.split_seed}.",
        f"Leak check (mmseqs exhaustive alignment, identity over the shorter chain): max val-train "
        f"{leak['val']:.0%}, max test-train {leak['test']:.0%}: "
        f"{'PASS' if max(leak.values()) < MIN_IDENTITY else 'FAIL'} (threshold {MIN_IDENTITY:.0%}).",
    ]
    if args.test_dir:
        lines.append(
            f"--test-dir: {report['pool_chains_homologous_to_test_removed']} pool chains >= {MIN_IDENTITY:.0%} "
            "identical to a test chain removed."
        )
    return lines


def reduced_reasons(args) -> list[str]:
    reasons = []
    if args.limit:
        reasons.append(f"--limit {args.limit} chains")
    if args.epochs < FULL_EPOCHS:
        reasons.append(f"epochs {args.epochs} (full: {FULL_EPOCHS})")
    if len(args.seeds) < 3:
        reasons.append(f"seeds {len(args.seeds)} (full: 3)")
    return reasons


def protocol_lines(args, runs: list[dict]) -> list[str]:
    reduced = reduced_reasons(args)
    timing = (
        f"contact training {mean_sd([r['train_s'] for r in runs])} s per seed "
        f"({mean_sd([r['s_per_step'] for r in runs], 1000)} ms per chain step), best epoch "
        f"{[r['best_epoch'] for r in runs]}, inference {mean_sd([r['infer_s'] for r in runs], 1000)} ms per test chain"
    )
    return [
        f"Protocol: ContactNet hidden {args.hidden}, layers {args.layers}, channels {args.channels}, blocks "
        f"{args.blocks}; AdamW lr {args.lr}, weight decay {WEIGHT_DECAY}, crops of {args.crop}, one chain per step, "
        f"{args.epochs} epoch(s), epoch chosen by validation loss; seeds {args.seeds}; folding {args.fold_steps} "
        f"steps; refinement {args.refine_steps} steps, lr {args.refine_lr}.",
        f"Timing: {timing}.",
        "REDUCED protocol (" + ", ".join(reduced) + "): not comparable with the published numbers."
        if reduced
        else "Full protocol.",
    ]


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    except OSError:
        pass  # not Linux: platform's answer
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; GPU {gpu}"


def unmet_goals(runs: list[dict], bound: dict[str, float]) -> list[str]:
    """The goals this run missed (each stated with its number), [] when all were met."""
    model = [r["contacts"]["model"].get("long/L/5", 0.0) for r in runs]
    separation = [r["contacts"]["separation"].get("long/L/5", 0.0) for r in runs]
    top_l = [r["contacts"]["model"].get("long/L", 0.0) for r in runs]
    fold_tm = [r["fold"]["tm"] for r in runs]
    goals = [
        (statistics.mean(model) > statistics.mean(separation),
         f"long-range top-L/5 above the separation baseline ({statistics.mean(model):.1%} vs "
         f"{statistics.mean(separation):.1%})"),
        (statistics.mean(top_l) >= GREMLIN_TOP_L,
         f"long-range top-L at Gremlin's published {GREMLIN_TOP_L:.1%} ({statistics.mean(top_l):.1%}; "
         "single sequence, no MSA)"),
        (bound["tm"] > SAME_FOLD_TM, f"fold from the true distogram TM > {SAME_FOLD_TM} ({bound['tm']:.3f})"),
        (statistics.mean(fold_tm) > SAME_FOLD_TM,
         f"fold from the predicted distogram TM > {SAME_FOLD_TM} ({statistics.mean(fold_tm):.3f})"),
        (all(r["refine"]["rmsd_after"] < r["refine"]["rmsd_before"] for r in runs),
         "refinement lowers the Cα RMSD for every seed"),
        (all(r["refine"]["lddt_after"] > r["refine"]["lddt_before"] for r in runs),
         "refinement raises the lDDT for every seed"),
    ]  # fmt: skip
    return [text for met, text in goals if not met]


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pool, skipped, n_files = load_pool(Path(args.data), args.limit)
    held = read_chains(structure_files(Path(args.test_dir)), MIN_LENGTH, MAX_LENGTH)[0] if args.test_dir else []
    with tempfile.TemporaryDirectory() as workdir:
        chains, report = split_chains(pool, held, Path(workdir), args.split_seed)
    splits = {name: graphs(c) for name, c in chains.items()}
    info = {"files": n_files, "pool": len(pool), "skipped": len(skipped)}
    log(f"chains train/val/test {'/'.join(str(len(splits[s])) for s in ('train', 'val', 'test'))}")
    runs = [one_seed(args, seed, splits) for seed in args.seeds]
    log("folding from the true distograms")
    bound = fold_chains(None, splits["test"], args, args.split_seed)
    n_fold = min(args.fold_chains, len(splits["test"]))
    unmet = unmet_goals(runs, bound)
    lines = [
        *data_lines(args, info, splits, report),
        *protocol_lines(args, runs),
        f"Hardware: {hardware()}; device {args.device}.",
        "",
        *contact_table(runs, len(splits["test"])),
        "",
        *fold_table(runs, bound, n_fold),
        "",
        *refine_table(runs, len(splits["test"]), args.refine_steps),
        "",
        "Goals not met: " + ("; ".join(unmet) if unmet else "none") + ".",
        f"Total time: {time.perf_counter() - started:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
