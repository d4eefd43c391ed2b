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
from components.stages import STAGES, STUDIES
from pipelines.registry import PROJECTS, get_project

log = logging.getLogger("scifolio")

COMMANDS = ("serve", "monitor", "replay", "retrain", "app")  # on the deployed version, not pipeline stages

# options that only some stages/commands read (the rest, --profile/--set/--overrides/--params/--data-dir, apply
# to all): dest -> (flag, the stages/commands that use it, the default). Given elsewhere, they are refused.
SCOPED_OPTIONS: dict[str, tuple[str, tuple[str, ...], object]] = {
    "skip": ("--skip", ("all",), []),
    "resume": ("--resume", ("train",), False),
    "port": ("--port", ("serve", "app"), None),  # None: serve 5050, app 7860 (DEFAULT_PORTS)
    "log_dir": ("--log-dir", ("serve", "monitor", "retrain"), None),
    "reports_dir": ("--reports-dir", ("monitor", "retrain", "replay"), Path("monitoring/reports")),
    "version": ("--version", ("monitor",), None),
    "if_drift": ("--if-drift", ("retrain",), False),
    "url": ("--url", ("replay",), "http://127.0.0.1:5050"),
    "stream": ("--stream", ("replay",), []),
    "replays": ("--replays", ("replay",), 1),
    "items": ("--items", ("replay",), 40),
    "seed": ("--seed", ("replay",), 0),
}

DEFAULT_PORTS = {"serve": 5050, "app": 7860}  # MLflow's scoring port convention; Gradio's default

EPILOG = f"""\
projects: {", ".join(sorted(PROJECTS))}
stages, in order (`all` runs them in one process): {" -> ".join(STAGES)}
studies beside the chain: ablate (the named variants of <project>.ablations over N seeds, from prepared data)
commands on the deployed version:
  serve    the registered champion over REST on 127.0.0.1 (--port, --log-dir)
  monitor  drift report of the champion's inference log (--version, --log-dir, --reports-dir)
  replay   send replay streams to a running server and check them (--url, --stream, --replays, --items, --seed,
           --reports-dir)
  retrain  the retraining loop: all stages, then register if the challenger wins (--if-drift, --log-dir,
           --reports-dir)
  app      the project's web app on 127.0.0.1, where it has one (--port, default 7860)
an option given to a stage or command that does not use it is an error.

overrides: --set KEY=VALUE, the value read as YAML; a key segment with a dot in it is quoted:
  --set energy.train.lr=1e-3 --set 'energy.data.split=[0.7, 0.1, 0.2]'
  --set 'energy.data.checksums."ETTh1.csv"=sha256:<64 hex>'
  --set profile=full   (selects the profile, like --profile; wins over it)
examples:
  python -m pipelines energy all --profile demo
  python -m pipelines medical train --set medical.train.max_epochs=1
  python -m pipelines energy replay --replays 3 --items 20
"""


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return parse


def _http_url(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s)://host:port URL, got {text!r}")
    return text


def _refuse_unused_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options the chosen stage/command does not read are an error (not silently ignored); then the defaults."""
    unused = [
        (flag, users)
        for dest, (flag, users, _) in SCOPED_OPTIONS.items()
        if hasattr(args, dest) and args.stage not in users
    ]
    if unused:
        what = "; ".join(f"{flag} is for {'/'.join(users)}" for flag, users in unused)
        parser.error(f"{', '.join(f for f, _ in unused)}: not used by `{args.stage}` ({what})")
    for dest, (_, _, default) in SCOPED_OPTIONS.items():
        if not hasattr(args, dest):
            setattr(args, dest, list(default) if isinstance(default, list) else default)
    if args.port is None:
        args.port = DEFAULT_PORTS.get(args.stage)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("project", choices=sorted(PROJECTS), help="the project (see below)")
    parser.add_argument(
        "stage",
        choices=[*STAGES, "all", *STUDIES, *COMMANDS],
        help="a pipeline stage, `all` of them, or a command on the deployed version (see below)",
    )
    parser.add_argument(
        "--profile", choices=["demo", "full"], help="overrides params.yaml's profile (--set profile=... wins)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml key, e.g. --set energy.train.lr=0.001 (repeatable); the value is YAML; "
        "quote a key segment holding a dot: --set 'energy.data.checksums.\"ETTh1.csv\"=sha256:...'",
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
    S = argparse.SUPPRESS  # scoped options: absent from the namespace unless given (defaults set afterwards)
    parser.add_argument("--skip", action="append", default=S, choices=STAGES, help="all: stages to skip")
    parser.add_argument(
        "--resume",
        action="store_true",
        default=S,
        help="train: continue an interrupted run from data/<project>/checkpoints/last.ckpt (none there: start over)",
    )
    deployed = parser.add_argument_group("serve / monitor / replay / retrain / app")
    deployed.add_argument(
        "--port", type=_int_in(1, 65535), default=S, help="serve/app: port on 127.0.0.1 (default 5050; app 7860)"
    )
    deployed.add_argument(
        "--log-dir",
        type=Path,
        default=S,
        help="serve/monitor/retrain: the inference logs (default monitoring/inference)",
    )
    deployed.add_argument(
        "--reports-dir", type=Path, default=S, help="monitor/retrain/replay: report root (default monitoring/reports)"
    )
    deployed.add_argument("--version", default=S, help="monitor: model version (default: the champion)")
    deployed.add_argument(
        "--if-drift", action="store_true", default=S, help="retrain: only when the monitor flags drift"
    )
    deployed.add_argument(
        "--url", type=_http_url, default=S, help="replay: the serving endpoint (default http://127.0.0.1:5050)"
    )
    deployed.add_argument("--stream", action="append", default=S, help="replay: stream(s) to send (default: all)")
    deployed.add_argument("--replays", type=_int_in(1), default=S, help="replay: replays per stream (default 1)")
    deployed.add_argument(
        "--items", type=_int_in(1), default=S, help="replay: items (windows, images) per replay (default 40)"
    )
    deployed.add_argument("--seed", type=int, default=S, help="replay: sampling seed (default 0)")
    args = parser.parse_args(argv)
    _refuse_unused_options(parser, args)
    return args


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
        print(f"error: {err}", file=sys.stderr)  # the message names the file or the dotted key
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
            stages.run(project, cfg, stage, paths, **({"resume": True} if args.resume else {}))
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
        project.app(cfg, host="127.0.0.1", port=args.port)
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
