"""python -m pipelines <project> <stage|command> [--profile demo|full] [--set key=value ...]

The one stage runner: every project runs the same stages (components/stages.py). `all` runs them in
order in one process (what `mlflow run . -e <project>` calls); `dvc repro` runs them one by one.
Commands on the deployed version: `serve` (REST, components/serve.py), `monitor` (drift report,
components/monitor.py), `replay` (send a stream to the server and check it, components/replay.py),
`retrain` (the loop, components/loop.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from components.config import PARAMS_FILE, ConfigError, load_config, quiet_environment
from components.stages import STAGES
from pipelines.registry import PROJECTS, get_project

log = logging.getLogger("scifolio")

COMMANDS = ("serve", "monitor", "replay", "retrain", "app")  # on the deployed version, not pipeline stages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    parser.add_argument("project", choices=sorted(PROJECTS))
    parser.add_argument(
        "stage",
        choices=[*STAGES, "all", *COMMANDS],
        help="serve: the champion over REST on 127.0.0.1:5050; monitor: drift report of its log; "
        "replay: send a stream to the server; retrain: the retraining loop",
    )
    parser.add_argument("--profile", choices=["demo", "full"], help="overrides params.yaml's profile")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml key, e.g. --set energy.train.lr=0.001 (repeatable)",
    )
    parser.add_argument(
        "--overrides",
        dest="overrides_text",
        default="",
        metavar="'K=V K=V'",
        help="space-separated overrides in one argument (for MLproject parameters)",
    )
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="the params file (default: params.yaml)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="root of the stage folders")
    parser.add_argument("--skip", action="append", default=[], choices=STAGES, help="with `all`: stages to skip")
    deployed = parser.add_argument_group("serve / monitor / replay / retrain")
    deployed.add_argument("--port", type=int, default=5050, help="serve: port on 127.0.0.1")
    deployed.add_argument(
        "--log-dir", type=Path, default=None, help="the inference logs (default monitoring/inference)"
    )
    deployed.add_argument("--reports-dir", type=Path, default=Path("monitoring/reports"), help="monitor: report root")
    deployed.add_argument("--version", default=None, help="monitor: model version (default: the champion)")
    deployed.add_argument("--if-drift", action="store_true", help="retrain: only when the monitor flags drift")
    deployed.add_argument("--url", default="http://127.0.0.1:5050", help="replay: the serving endpoint")
    deployed.add_argument("--stream", action="append", default=[], help="replay: stream(s) to send (default: all)")
    deployed.add_argument("--replays", type=int, default=1, help="replay: replays per stream")
    deployed.add_argument("--items", type=int, default=40, help="replay: items (windows, images) per replay")
    deployed.add_argument("--seed", type=int, default=0, help="replay: sampling seed")
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

    from components import stages
    from components.project import Paths, Unsupported

    paths = Paths.of(args.project, args.data_dir)
    if args.stage in COMMANDS:
        os.environ.setdefault("MLFLOW_TRACKING_URI", cfg.tracking.uri)
        try:
            return run_command(args, project, cfg, paths)
        except Unsupported as skipped:  # a capability the project lacks: one line, and dvc repro goes on
            print(skipped, file=sys.stderr)
            return 0
        except Exception as err:  # one readable line, not a library traceback
            if os.environ.get("SCIFOLIO_DEBUG"):
                raise
            print(f"error: {args.project} {args.stage}: {err}", file=sys.stderr)
            return 1

    launcher_run = os.environ.get("MLFLOW_RUN_ID")  # set by `mlflow run`; our stages log to the project's experiment
    todo = [s for s in STAGES if s not in args.skip] if args.stage == "all" else [args.stage]
    for stage in todo:
        start = time.perf_counter()
        try:
            stages.run(project, cfg, stage, paths)
        except Unsupported as skipped:
            print(skipped, file=sys.stderr)
            continue
        except Exception as err:  # one readable line, not a library traceback
            if os.environ.get("SCIFOLIO_DEBUG"):
                raise
            print(f"error: {args.project} {stage}: {err}", file=sys.stderr)
            return 1
        log.info("%s %s done in %.1f s", args.project, stage, time.perf_counter() - start)
    if launcher_run:
        link_launcher_run(launcher_run, args.project, paths)
    return 0


def run_command(args, project, cfg, paths) -> int:
    """The commands on the deployed version (not DVC stages, except `monitor`) of cfg.model_name."""

    from components.project import require

    if args.stage == "monitor":  # a dvc stage: its output exists whatever happens, so dvc repro goes on
        return monitor_command(args, project, cfg, paths)
    require(project, args.stage)  # raises Unsupported for a capability the project lacks
    if args.stage == "serve":  # a long-running server of the registered champion
        from components.serve import DEFAULT_LOG_DIR, serve

        serve(cfg.model_name, port=args.port, log_dir=args.log_dir or DEFAULT_LOG_DIR)
    elif args.stage == "app":
        project.app(cfg, host="127.0.0.1", port=args.port if args.port != 5050 else 7860)
    elif args.stage == "retrain":
        from components.loop import retrain

        retrain(project, cfg, paths, if_drift=args.if_drift, log_dir=args.log_dir, reports_dir=args.reports_dir)
    elif args.stage == "replay":
        from components.replay import run_replays, summary

        streams = args.stream or list(project.replay_streams)
        unknown = sorted(set(streams) - set(project.replay_streams))
        if unknown:
            raise ValueError(f"unknown stream(s) {unknown}; {project.name} has {list(project.replay_streams)}")
        results = run_replays(
            project,
            cfg,
            paths,
            args.url.rstrip("/"),
            streams,
            args.replays,
            args.items,
            args.seed,
            reports_dir=args.reports_dir,
        )
        print(summary(results).to_string(index=False))
    return 0


def monitor_command(args, project, cfg, paths) -> int:
    """The drift check of the champion; data/<p>/monitor/decision.json records it (or why there is none)."""
    import json

    from components.io import atomic_dir
    from components.project import Unsupported, require

    try:
        require(project, "monitor")
    except Unsupported as skipped:
        decision = {"model": cfg.model_name, "status": "unsupported", "drift": False, "reasons": [str(skipped)]}
        print(skipped, file=sys.stderr)
    else:
        from components.monitor import check

        decision = check(project, cfg, version=args.version, log_dir=args.log_dir, reports_dir=args.reports_dir)
        keys = ("model", "version", "status", "drift", "items", "reasons", "report_dir")
        print(json.dumps({k: decision.get(k) for k in keys}))
    with atomic_dir(paths.monitor) as tmp:
        (tmp / "decision.json").write_text(json.dumps(decision, indent=2, default=str) + "\n")
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
