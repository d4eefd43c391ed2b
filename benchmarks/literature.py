"""Literature benchmark: every task through the plug-in's own hooks, beside the published numbers.

    python benchmarks/literature.py [--tasks intent sentiment roles-csabstruct roles-nicta hedging]
        [--seeds 0 1 2] [--encoder scratch|minilm] [--epochs 10] [--limit 0] [--folds 10]
        [--test-file TASK=PATH ...] [--set literature.key=value ...]

For each run: load_config (params.yaml's `full` profile + --set style overrides), then the stages pull
(from ../shared/data/literature), validate and prepare, and the hooks datamodule / build_module /
components.train.fit / evaluate, in a temporary folder (no MLflow runs, no registry). SciCite and BioScope
are run once per seed; Athar over its folds (seed 0); CSAbstruct and NICTA once per seed. `--limit` caps
the rows read per raw file (whole groups): the table states the protocol that actually ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_config, quiet_environment  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "literature"
# (task, overrides, the metric key in evaluate's output, its name, the published number: BENCHMARKS.md)
TASKS = {
    "intent": ("intent", [f"literature.data.scicite_dir={SHARED / 'scicite'}"], "macro_f1", "macro-F1",
               "SciBERT 85.5 (paper); scaffolds 84.0; ImpactCite 88.9"),
    "sentiment": ("sentiment", [f"literature.data.sentiment_dir={SHARED / 'citation_sentiment'}"], "macro_f1",
                  "macro-F", "Athar 2011 SVM n-grams + dependencies about 76 (10-fold CV)"),
    "roles-csabstruct": ("roles", ["literature.data.roles_corpus=csabstruct",
                                   f"literature.data.csabstruct_dir={SHARED / 'csabstruct'}",
                                   "literature.model.max_len=256"], "accuracy", "micro-F1 (accuracy)",
                         "SSC-SciBERT (Cohan et al. 2019) about 83.1"),
    "roles-nicta": ("roles", ["literature.data.roles_corpus=nicta", f"literature.data.nicta_dir={SHARED / 'nicta_piboso'}",
                              "literature.model.max_len=256"], "accuracy", "micro-F1 (accuracy)",
                    "HSLN (Jin & Szolovits 2018) 84.7"),
    "hedging": ("hedging", [f"literature.data.bioscope_dir={SHARED / 'bioscope'}"], "uncertain_f1",
                "uncertain-class F1", "CoNLL-2010 task 1 best biological systems about 86"),
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--encoder", choices=["scratch", "minilm"], default="scratch")
    p.add_argument("--epochs", type=int, default=None, help="train.max_epochs (default: params.yaml's)")
    p.add_argument("--limit", type=int, default=0, help="rows read per raw file, whole groups (0: all)")
    p.add_argument("--folds", type=int, default=10, help="Athar folds run (of data.n_folds)")
    p.add_argument("--test-file", action="append", default=[], metavar="TASK=PATH", help="an external held-out file")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra params overrides")
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    return p.parse_args()


ENCODERS = {
    "scratch": ["literature.model.encoder=scratch", "literature.train.lr=5.0e-4"],
    "minilm": [
        "literature.model.encoder=pretrained",
        "literature.model.encoder_path=minilm",
        "literature.train.lr=3.0e-5",
    ],
}


def one_run(args, task_key: str, seed: int, fold: int | None) -> dict:
    from components import stages
    from components.project import Paths
    from components.train import fit
    from pipelines.literature.project import LITERATURE

    task, overrides, metric, _, _ = TASKS[task_key]
    held = dict(t.split("=", 1) for t in args.test_file)
    sets = [f"literature.task={task}", f"literature.data.limit={args.limit}", f"seed={seed}", *overrides]
    # each encoder with its own learning rate (a pretrained encoder is fine-tuned 10-20x more gently)
    sets += ENCODERS[args.encoder]
    if args.epochs is not None:
        sets.append(f"literature.train.max_epochs={args.epochs}")
    if fold is not None:
        sets.append(f"literature.data.fold={fold}")
    if task_key in held:
        sets.append(f"literature.data.test_file={held[task_key]}")
    cfg = load_config("literature", LITERATURE.section, Path(args.params), "full", [*sets, *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"  # validate logs a run: keep it here
        paths = Paths.of("literature", Path(tmp) / "data")
        for stage in ("pull", "validate", "prepare"):
            stages.run(LITERATURE, cfg, stage, paths)
        datamodule = LITERATURE.datamodule(cfg, paths)
        module = LITERATURE.build_module(cfg, datamodule, {})
        start = time.perf_counter()
        result = fit(module, datamodule, cfg.project.train, Path(tmp) / "ckpt", LITERATURE.objective.select, seed)
        seconds = time.perf_counter() - start
        stages.load_best_weights(module, result.best_checkpoint)
        evaluation = LITERATURE.evaluate(cfg, module.net.eval(), datamodule, paths)
        rows = {s: int(len(datamodule.rows(s)[1])) for s in ("train", "val", "test")}
    m = evaluation.metrics
    return {
        "score": 100 * m[f"test/{metric}"],
        "macro": 100 * m["test/macro_f1"],
        "heldout": 100 * m[f"heldout/{metric}"] if f"heldout/{metric}" in m else None,
        "seconds": seconds,
        "epochs": result.epochs,
        "rows": rows,
    }


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    quiet_environment()
    args = parse_args()
    lines = [
        f"Protocol run: encoder {args.encoder}, epochs {args.epochs or 'params.yaml'}, "
        f"limit {args.limit or 'none'} rows per raw file (whole groups), seeds {args.seeds}, "
        f"Athar folds 0..{args.folds - 1}; {platform.processor() or platform.machine()}, CPU "
        f"{os.cpu_count()} cores. {'REDUCED protocol: not comparable with the published numbers.' if args.limit else ''}",
        "",
        "| task | metric | ours (mean ± sd) | macro-F1 | runs | rows train/val/test (first run) | train s per run | held-out | published |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for key in args.tasks:
        runs = (
            [one_run(args, key, 0, k) for k in range(args.folds)]
            if key == "sentiment"
            else [one_run(args, key, s, None) for s in args.seeds]
        )
        _, _, _, metric_name, published = TASKS[key]
        r = runs[0]["rows"]
        held = [x["heldout"] for x in runs if x["heldout"] is not None]
        lines.append(
            f"| {key} | {metric_name} | {mean_sd([x['score'] for x in runs])} | {mean_sd([x['macro'] for x in runs])} "
            f"| {len(runs)} | {r['train']}/{r['val']}/{r['test']} | {statistics.mean(x['seconds'] for x in runs):.0f} "
            f"| {mean_sd(held) if held else '-'} | {published} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
