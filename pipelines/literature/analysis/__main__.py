"""python -m pipelines.literature.analysis <corpus|trends|recommend|bias>... [--profile demo|full] [--set key=value ...]

Loads the literature section like `python -m pipelines` does (components.config.load_config), then runs the
steps in order in this one process (dvc.yaml runs trends, recommend and bias together: they share their deps,
and one process pays the torch/transformers/MLflow imports once); each step writes data/literature/analysis/<step>/ (the corpus step data/literature/corpus/ too) and
logs an MLflow run in literature-analysis[-demo]. The app (`python -m pipelines literature app`) reads what these steps wrote.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from components.config import PARAMS_FILE, ConfigError, load_config, quiet_environment

STEPS = ("corpus", "trends", "recommend", "bias")  # the app: python -m pipelines literature app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.literature.analysis", description=__doc__.splitlines()[0]
    )
    parser.add_argument("steps", nargs="+", choices=STEPS, metavar="step", help=", ".join(STEPS))
    parser.add_argument("--profile", choices=["demo", "full"], help="overrides params.yaml's profile")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml key, e.g. --set literature.analysis.max_docs=500 (repeatable)",
    )
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="root of the stage folders")
    return parser.parse_args(argv)


def run_step(step: str, cfg, data_dir: Path) -> dict:
    if step == "corpus":
        from pipelines.literature.analysis.corpus import run
    elif step == "trends":
        from pipelines.literature.analysis.trends import run
    elif step == "recommend":
        from pipelines.literature.analysis.recommend import run
    elif step == "bias":
        from pipelines.literature.analysis.bias import run
    else:
        raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
    return run(cfg, data_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # the section, not the plug-in: the analyses import nothing of the models (dvc.yaml's deps say so)
    from pipelines.literature.config import LiteratureSection

    try:
        cfg = load_config("literature", LiteratureSection, args.params, args.profile, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_TRACKING_URI", cfg.tracking.uri)
    for step in args.steps:  # a failed step stops the rest: its folder is never left half-written
        start = time.perf_counter()
        try:
            summary = run_step(step, cfg, args.data_dir)
        except Exception as err:  # one readable line (the message names the file and reason), not a traceback
            if os.environ.get("SCIFOLIO_DEBUG"):
                raise
            print(f"error: literature {step}: {err}", file=sys.stderr)
            return 1
        print(json.dumps(summary, indent=1, default=str)[:4000])
        logging.getLogger("scifolio").info("literature %s done in %.1f s", step, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
