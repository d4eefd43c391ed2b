"""python -m pipelines <project> <stage> [--profile demo|full] [--set key=value ...]

The one stage runner: every project runs the same stages (components/stages.py). `all` runs them in
order in one process (what `mlflow run . -e <project>` calls); `dvc repro` runs them one by one.
"""

from __future__ import annotations

import argparse
import os
import logging
import sys
import time
import warnings
from pathlib import Path

from components.config import PARAMS_FILE, ConfigError, load_config, quiet_environment
from components.stages import STAGES
from pipelines.registry import PROJECTS, get_project

log = logging.getLogger("scifolio")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    parser.add_argument("project", choices=sorted(PROJECTS))
    parser.add_argument("stage", choices=[*STAGES, "all", "serve"], help="serve: the champion over REST on 127.0.0.1:5050")
    parser.add_argument("--profile", choices=["demo", "full"], help="overrides params.yaml's profile")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params.yaml key, e.g. --set energy.train.lr=0.001 (repeatable)")
    parser.add_argument("--overrides", dest="overrides_text", default="", metavar="'K=V K=V'",
                        help="space-separated overrides in one argument (for MLproject parameters)")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="the params file (default: params.yaml)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="root of the stage folders")
    parser.add_argument("--skip", action="append", default=[], choices=STAGES, help="with `all`: stages to skip")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("alembic", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|does not have many workers).*")

    project = get_project(args.project)
    try:
        overrides = [*args.overrides, *args.overrides_text.split()]
        cfg = load_config(args.project, project.section, args.params, args.profile, overrides)
    except ConfigError as err:
        print(f"error: {args.params}: {err}", file=sys.stderr)
        return 2

    if args.stage == "serve":  # not a pipeline stage: a long-running server of the registered champion
        from components.serve import serve

        os.environ.setdefault("MLFLOW_TRACKING_URI", cfg.tracking.uri)
        serve(project.name)
        return 0

    from components import stages
    from components.project import Paths

    paths = Paths.of(args.project, args.data_dir)
    launcher_run = os.environ.get("MLFLOW_RUN_ID")  # set by `mlflow run`; our stages log to the project's experiment
    todo = [s for s in STAGES if s not in args.skip] if args.stage == "all" else [args.stage]
    for stage in todo:
        start = time.perf_counter()
        try:
            stages.run(project, cfg, stage, paths)
        except Exception as err:  # one readable line, not a library traceback
            if os.environ.get("SCIFOLIO_DEBUG"):
                raise
            print(f"error: {args.project} {stage}: {err}", file=sys.stderr)
            return 1
        log.info("%s %s done in %.1f s", args.project, stage, time.perf_counter() - start)
    if launcher_run:
        link_launcher_run(launcher_run, args.project, paths)
    return 0


def link_launcher_run(run_id: str, project: str, paths) -> None:
    """Point the `mlflow run` launcher's run at the project's runs and registered version."""
    import json

    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, "scifolio.project", project)
    for name, path in (("train_run_id", paths.model / "run.json"), ("gate", paths.registry / "decision.json")):
        if path.exists():
            data = json.loads(path.read_text())
            value = data.get("run_id") if name == "train_run_id" else f"v{data['version']}: {data['reason']}"
            client.set_tag(run_id, f"scifolio.{name}", str(value)[:5000])


if __name__ == "__main__":
    sys.exit(main())
