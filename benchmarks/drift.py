"""Detection power and false-alarm rate of the drift monitor, over replays to the served champions.

    python benchmarks/drift.py                       # both projects, 20 replays per stream, 40 items each
    python benchmarks/drift.py --projects energy --replays 30

Needs the pipeline's outputs (`make run`: data/<project>/prepared and a registered champion in the
MLflow store). For each project it starts the real server (`python -m pipelines <p> serve`) on a free
loopback port with a temporary inference log, sends every stream (components/replay.py), runs one
drift check per replay on exactly that replay's records, and prints one table:
    unshifted -> false-alarm rate (share of replays flagged), any other stream -> detection power.
Results: benchmarks/results/drift.{json,md}. Replay reports go to a temporary folder (not MLflow).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"


def markdown(table) -> str:
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", nargs="+", default=["energy", "medical"])
    parser.add_argument("--replays", type=int, default=20, help="replays per stream (>= 20 for the report)")
    parser.add_argument("--items", type=int, default=40, help="items (windows, images) per replay")
    parser.add_argument("--seed", type=int, default=2026, help="replay sampling seed")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    from components.config import load_config, quiet_environment
    from components.project import Paths
    from components.replay import run_replays, served, summary
    from pipelines.registry import get_project

    quiet_environment()
    tables, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.projects:
            project = get_project(name)
            cfg = load_config(name, project.section, profile=args.profile)
            os.environ.setdefault("MLFLOW_TRACKING_URI", cfg.tracking.uri)
            with served(name, Path(tmp) / "inference") as url:
                results = run_replays(
                    project,
                    cfg,
                    Paths.of(name),
                    url,
                    list(project.replay_streams),
                    args.replays,
                    args.items,
                    args.seed,
                    reports_dir=Path(tmp) / "reports",
                    write_html=False,
                    log_to_mlflow=False,
                )
            table = summary(results)
            table.insert(0, "project", name)
            tables.append(table)
            rows += [{"project": name, **r.__dict__} for r in results]
            print(table.to_string(index=False), flush=True)
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "replays": args.replays,
        "items": args.items,
        "seed": args.seed,
        "profile": args.profile or "params.yaml",
    }
    (RESULTS / "drift.json").write_text(
        json.dumps({**meta, "summary": table.to_dict("records"), "replays_detail": rows}, indent=2, default=str) + "\n"
    )
    (RESULTS / "drift.md").write_text(
        f"Measured {meta['measured_at']} ({args.replays} replays x {args.items} items per "
        f"stream, seed {args.seed})\n\n" + markdown(table) + "\n"
    )
    print("\n" + table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
