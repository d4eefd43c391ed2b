"""ETT benchmark: the `full` profile's recipe at every horizon and several seeds, beside the published rows.

    python benchmarks/energy.py [--data ../shared/data/energy] [--dataset ETTh1] [--models patchtst dlinear]
                                [--seeds 3]

Runs the project's own stages (pull from the local mirror with checksum, validate, prepare) and its
own training component, then evaluates EVERY test window (the stricter protocol of BENCHMARKS.md).
Hyper-parameters are params.yaml's `full` profile; nothing is tuned on the test split. Results are
appended to a JSON file as each run finishes (re-running skips finished runs), and the Markdown
table is rewritten after each run. The table names the dataset it was measured on and shows the
published rows of that dataset only (BENCHMARKS.md); results of another dataset are never mixed in.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_config, quiet_environment  # noqa: E402

# Published MSE / MAE at horizons 96, 192, 336, 720, by the dataset they were measured on
# (shared/notes/BENCHMARKS.md; None where only the MSE was published). Every one dropped the last
# incomplete test batch (drop_last), which flatters them; this benchmark evaluates every window.
PUBLISHED: dict[str, dict[str, list[tuple[float, float | None]]]] = {
    "ETTh1": {
        "PatchTST/64 (published, drop_last)": [(0.370, 0.400), (0.413, 0.429), (0.422, 0.440), (0.447, 0.468)],
        "PatchTST/42 (published, drop_last)": [(0.375, 0.399), (0.414, 0.421), (0.431, 0.436), (0.449, 0.466)],
        "DLinear (published, L=336, drop_last)": [(0.375, 0.399), (0.405, 0.416), (0.439, 0.443), (0.472, 0.490)],
        "NLinear (published, drop_last)": [(0.374, 0.394), (0.408, 0.415), (0.429, 0.427), (0.440, 0.453)],
    },
    "ETTh2": {"PatchTST/64 (published, drop_last)": [(0.274, None), (0.341, None), (0.329, None), (0.379, None)]},
    "ETTm1": {"PatchTST/64 (published, drop_last)": [(0.293, None), (0.333, None), (0.369, None), (0.416, None)]},
    "ETTm2": {"PatchTST/64 (published, drop_last)": [(0.166, None), (0.223, None), (0.274, None), (0.362, None)]},
}
HORIZONS = (96, 192, 336, 720)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "energy"), help="mirror folder or URL")
    p.add_argument("--dataset", default="ETTh1")
    p.add_argument("--models", nargs="+", default=["patchtst", "dlinear"])
    p.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra params overrides")
    p.add_argument("--results", default=None, help="default: benchmarks/results/energy_<dataset>.json")
    p.add_argument("--table", default=None, help="default: benchmarks/results/energy_<dataset>.md")
    args = p.parse_args()
    stem = REPO / "benchmarks" / "results" / f"energy_{args.dataset.lower()}"
    args.results = args.results or str(stem.with_suffix(".json"))
    args.table = args.table or str(stem.with_suffix(".md"))
    return args


def run_one(args, model: str, horizon: int, seed: int, paths) -> dict:
    import torch

    from components.stages import load_best_weights
    from components.train import fit
    from pipelines.energy.evaluate import evaluate
    from pipelines.energy.project import ENERGY
    from pipelines.energy.schema import ett_schema

    overrides = [f"energy.model.name={model}", f"energy.window.horizon={horizon}", f"seed={seed}", *args.overrides]
    cfg = load_config("energy", ENERGY.section, REPO / "params.yaml", "full", overrides)
    dm = ENERGY.datamodule(cfg, paths)
    module = ENERGY.build_module(cfg, dm, {})
    with tempfile.TemporaryDirectory() as ckpt:
        result = fit(module, dm, cfg.project.train, Path(ckpt), ENERGY.objective.select, seed)
        load_best_weights(module, result.best_checkpoint)
    evaluation = evaluate(module.net, dm, ett_schema(args.dataset).freq_seconds)
    m = evaluation.metrics
    return {
        "dataset": args.dataset,
        "model": model,
        "horizon": horizon,
        "seed": seed,
        "test_mse": m["test/mse"],
        "test_mae": m["test/mae"],
        "val_mse": m["val/mse"],
        "test_windows": int(m["test/windows"]),
        "test_original_mae": m["test/original/mae"],
        "seasonal_naive_mse": m["baseline/test/mse"],
        "epochs": result.epochs,
        "best_val_loss": result.best_score,
        "train_seconds": result.seconds,
        "params": sum(p.numel() for p in module.parameters()),
        "threads": torch.get_num_threads(),
        "seq_len": cfg.project.window.seq_len,
    }


def prepare_data(args, workdir: Path):
    from components import stages
    from components.project import Paths
    from pipelines.energy.project import ENERGY

    cfg = load_config(
        "energy",
        ENERGY.section,
        REPO / "params.yaml",
        "full",
        [f"energy.data.ett_mirror={args.data}", f"energy.data.dataset={args.dataset}", *args.overrides],
    )
    paths = Paths.of("energy", workdir)
    import os

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/mlflow.db")  # validate logs its report
    stages.pull(ENERGY, cfg, paths)
    stages.validate(ENERGY, cfg, paths)
    stages.prepare(ENERGY, cfg, paths)
    return paths


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _pair(mse: float, mae: float | None) -> str:
    return f"{mse:.3f} / {mae:.3f}" if mae is not None else f"{mse:.3f} / -"


def table(results: list[dict], dataset: str, models: list[str]) -> str:
    """The Markdown table of `dataset`: its measured rows (results of other datasets are left out;
    rows without a dataset are the ETTh1 runs of earlier versions) and the rows published on it."""
    results = [r for r in results if r.get("dataset", "ETTh1") == dataset]
    lines = [
        f"{dataset}, every test window (no dropped batch), MSE / MAE on the standardised scale; "
        f"mean ± sd over seeds; CPU: {platform.processor() or platform.machine()}, "
        f"{results[0]['threads'] if results else '?'} threads.",
        "",
        "| model | seeds | " + " | ".join(f"{h} MSE / MAE" for h in HORIZONS) + " | train time per run (s) |",
        "|---|---|" + "---|" * len(HORIZONS) + "---|",
    ]
    for model in models:
        cells, seeds, seconds = [], set(), []
        for h in HORIZONS:
            rows = [r for r in results if r["model"] == model and r["horizon"] == h]
            seeds |= {r["seed"] for r in rows}
            seconds += [r["train_seconds"] for r in rows]
            cells.append(
                f"{mean_sd([r['test_mse'] for r in rows])} / {mean_sd([r['test_mae'] for r in rows])}"
                if rows
                else "not run"
            )
        lines.append(
            f"| {model} (measured) | {len(seeds)} | " + " | ".join(cells) + f" | {statistics.mean(seconds):.0f} |"
            if seconds
            else f"| {model} | 0 | " + " | ".join(cells) + " | |"
        )
    if results:
        cells = []
        for h in HORIZONS:
            rows = [r for r in results if r["horizon"] == h]
            cells.append(f"{rows[0]['seasonal_naive_mse']:.3f} / -" if rows else "not run")
        lines.append("| seasonal naive (daily, measured) | - | " + " | ".join(cells) + " | 0 |")
    published = PUBLISHED.get(dataset, {})
    for name, row in published.items():
        lines.append(f"| {name} | - | " + " | ".join(_pair(mse, mae) for mse, mae in row) + " | |")
    if not published:
        lines += [
            "",
            f"No published row for {dataset}: the measured rows above have nothing published to compare with.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse_args()
    quiet_environment()
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    results_path, table_path = Path(args.results), Path(args.table)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["model"], r["horizon"], r["seed"]) for r in results if r.get("dataset", "ETTh1") == args.dataset}
    with tempfile.TemporaryDirectory() as workdir:
        paths = prepare_data(args, Path(workdir))
        for model in args.models:  # seeds outermost: every horizon gets a first seed early
            for seed in range(args.seeds):
                for horizon in args.horizons:
                    if (model, horizon, seed) in done:
                        continue
                    start = time.perf_counter()
                    row = run_one(args, model, horizon, seed, paths)
                    results.append(row)
                    results_path.write_text(json.dumps(results, indent=1) + "\n")
                    table_path.write_text(table(results, args.dataset, args.models))
                    print(
                        f"{model} h={horizon} seed={seed}: test MSE {row['test_mse']:.4f} MAE {row['test_mae']:.4f} "
                        f"({row['epochs']} epochs, {time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
    print(table(results, args.dataset, args.models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
