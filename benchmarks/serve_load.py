"""Loopback load test of the served champion: requests/s, p50/p99 latency, and no lost log record.

    python benchmarks/serve_load.py                 # energy, 8 client threads, 60 s
    python benchmarks/serve_load.py --project medical --threads 4 --seconds 30

Starts the real server (`python -m pipelines <project> serve`) with a temporary inference log, sends
validation-split requests from N threads until the time bound, each tagged with a unique
X-Request-ID, then checks that the log holds exactly one record per request sent (none lost, none
interleaved: every line parses). Prints one table; results in benchmarks/results/serve_load_<project>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="energy")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound of the load")
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    import numpy as np
    import requests

    from components.config import load_config, quiet_environment
    from components.inference_log import log_path, read_log
    from components.project import Paths
    from components.replay import served
    from pipelines.registry import get_project

    quiet_environment()
    project = get_project(args.project)
    cfg = load_config(args.project, project.section)
    os.environ.setdefault("MLFLOW_TRACKING_URI", cfg.tracking.uri)
    bodies = [
        json.dumps({"dataframe_split": json.loads(r.to_json(orient="split", index=False, date_format="iso"))})
        for r in project.reference_requests(cfg, Paths.of(args.project), 64)
    ]
    latencies, statuses, lock = [], [], threading.Lock()
    with tempfile.TemporaryDirectory() as tmp, served(args.project, Path(tmp)) as url:
        version = requests.get(f"{url}/health", timeout=10).json()["version"]
        stop_at = time.monotonic() + args.seconds

        def client(t: int) -> None:
            with requests.Session() as session:
                i = 0
                while time.monotonic() < stop_at:
                    start = time.perf_counter()
                    r = session.post(
                        f"{url}/invocations",
                        data=bodies[(t + i) % len(bodies)],
                        timeout=60,
                        headers={"Content-Type": "application/json", "X-Request-ID": f"load-{t}-{i}"},
                    )
                    with lock:
                        latencies.append(time.perf_counter() - start)
                        statuses.append(r.status_code)
                    i += 1

        began = time.perf_counter()
        pool = [threading.Thread(target=client, args=(t,)) for t in range(args.threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - began
        records = read_log(log_path(Path(tmp), cfg.model_name, version))  # raises on an interleaved line
    ids = [r["client_request_id"] for r in records if str(r.get("client_request_id", "")).startswith("load-")]
    result = {
        "project": args.project,
        "version": version,
        "threads": args.threads,
        "seconds": round(elapsed, 1),
        "requests": len(statuses),
        "non_200": sum(s != 200 for s in statuses),
        "requests_per_s": round(len(statuses) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
        "log_records": len(ids),
        "lost_records": len(statuses) - len(set(ids)),
        "duplicate_records": len(ids) - len(set(ids)),
    }
    out = ROOT / "benchmarks" / "results" / f"serve_load_{args.project}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    print("\n".join(f"{k:<{width}}  {v}" for k, v in result.items()))
    return 0 if result["lost_records"] == 0 and result["duplicate_records"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
