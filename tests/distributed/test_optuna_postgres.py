"""Four tune workers share one Optuna study on a real PostgreSQL server; one is SIGKILLed mid-trial.

What must hold (components/tune.py: heartbeats, then Optuna's RetryHeartbeatStaleTrialCallback):
- the killed worker's RUNNING trial is marked FAIL once its heartbeat is older than tune.grace_s,
- its parameters are re-queued once, and a surviving worker completes them: no trial is lost,
- no trial is counted twice: trial numbers are unique, no failed trial is completed twice,
- the study ends with exactly as many COMPLETE trials as the workers were asked for (arithmetic below).

Each worker runs `python -m pipelines energy tune` in a private copy of the prepared demo folder:
the tune stage writes data/energy/tuned through atomic_dir (a temporary folder renamed into place),
and four workers finishing in one data dir would rename over each other's folders; each also gets its
own MLflow sqlite file (one sqlite file under four concurrent writers fails with "database is locked").
The study itself, the shared state under test, lives only in PostgreSQL.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import pytest

from tests.distributed.helpers import REPO, cli_env, pipeline

WORKERS = 4
TRIALS = 3  # per worker (tune.n_trials): several trials per survivor, so that their trials overlap in the study
HEARTBEAT_S = 1  # the shortest Optuna allows: the dead worker's trial goes stale quickly
GRACE_S = 3  # 3 missed heartbeats: a busy core may delay a live worker's heartbeat thread, not by 3 s


def _study(url: str, name: str):
    import optuna

    from components.tune import rdb_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=rdb_url(url))


def _wait_for_running_trial(url: str, name: str, worker: str, proc, deadline: float) -> int:
    """The number of a RUNNING trial that `worker` ("host:pid") is training, once there is one."""
    from optuna.trial import TrialState

    trials = []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            trials = _study(url, name).get_trials(deepcopy=False)
        except KeyError:  # the worker has not created the study yet
            trials = []
        for trial in trials:
            if trial.state == TrialState.RUNNING and trial.user_attrs.get("worker") == worker:
                return trial.number
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate(timeout=30)
    seen = [(t.number, t.state.name, t.user_attrs.get("worker")) for t in trials]
    pytest.fail(f"worker {worker} never had a RUNNING trial; trials: {seen}; its stderr:\n{err[-3000:]}")


def test_the_throwaway_server_answers_on_loopback_with_trust_auth(postgres):
    import psycopg2

    postgres.create_database("smoke")
    with psycopg2.connect(postgres.url("smoke")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_user, inet_server_addr()::text, current_setting('listen_addresses')")
        assert cursor.fetchone() == ("postgres", "127.0.0.1/32", "127.0.0.1")


def test_killed_worker_trial_is_retried_once_and_the_study_completes(postgres, energy_copy):
    import optuna
    from optuna.trial import TrialState

    from components.tune import rdb_url, retried_from

    started = time.monotonic()
    url = postgres.create_database("optuna")
    name = "energy-kill-test"
    optuna.storages.RDBStorage(rdb_url(url))  # creates the tables first: workers never race to create them
    tune = [
        f"energy.tune.storage={url}",
        f"energy.tune.study_name={name}",
        f"energy.tune.n_trials={TRIALS}",
        "energy.tune.max_epochs=1",  # short trials: the test is about the study's bookkeeping
        "energy.tune.pruner=none",  # every trial that runs to the end is COMPLETE, never PRUNED: exact counts
        f"energy.tune.heartbeat_s={HEARTBEAT_S}",
        f"energy.tune.grace_s={GRACE_S}",
        "energy.tune.retries=1",
    ]

    def start(i: int) -> subprocess.Popen:
        work = energy_copy(f"worker{i}")
        command = pipeline(work, "tune", *[a for o in tune for a in ("--set", o)])
        return subprocess.Popen(
            command, cwd=REPO, env=cli_env(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    # The victim first, killed inside its first trial; then the three survivors, started together. Their
    # start-up (imports, MLflow, data: well over HEARTBEAT_S + GRACE_S on any machine) lets the dead trial go
    # stale before their first trial begins, so the timing is not left to chance; all three then race to
    # fail it, and Optuna lets exactly one succeed (the others get UpdateFinishedTrialError, caught).
    victim = start(0)
    victim_id = f"{socket.gethostname()}:{victim.pid}"
    survivors: list[subprocess.Popen] = []
    try:
        killed_trial = _wait_for_running_trial(url, name, victim_id, victim, time.monotonic() + 60)
        victim.send_signal(signal.SIGKILL)  # no cleanup, no exception handler: its trial stays RUNNING
        killed_at = time.monotonic()
        victim.wait(timeout=10)
        survivors = [start(i) for i in range(1, WORKERS)]
        outputs = [p.communicate(timeout=120) for p in survivors]
    finally:
        for p in [victim, *survivors]:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(survivors, outputs):
        assert p.returncode == 0, f"a surviving worker failed ({p.returncode}):\n{out[-2000:]}\n{err[-4000:]}"

    trials = _study(url, name).get_trials(deepcopy=False)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    complete, failed = by_state[TrialState.COMPLETE], by_state[TrialState.FAIL]
    retries = [t for t in trials if retried_from(t) is not None]
    victim_complete = [t for t in complete if t.user_attrs.get("worker") == victim_id]
    counts = {
        "trials": len(trials),
        "complete": len(complete),
        "failed": len(failed),
        "retried": len(retries),
        "victim_complete_before_kill": len(victim_complete),
        "survivors_s_after_kill": round(time.monotonic() - killed_at, 1),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"optuna fault test: killed trial {killed_trial}; {counts}")

    # nothing left behind: no trial still RUNNING (the dead one was failed) nor WAITING (its retry was run)
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING], counts
    # the killed trial, and only it, failed
    assert [t.number for t in failed] == [killed_trial], counts
    # ... and it was retried exactly once, with its parameters, by a survivor, to completion
    assert len(retries) == 1, counts
    retry = retries[0]
    assert retried_from(retry) == killed_trial
    assert retry.state == TrialState.COMPLETE
    assert retry.params == failed[0].params
    assert retry.user_attrs["worker"] != victim_id
    # no duplicates: unique trial numbers, and no failed trial completed twice
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    originals = [retried_from(t) for t in complete if retried_from(t) is not None]
    assert len(originals) == len(set(originals))
    # the arithmetic: each survivor runs exactly TRIALS trials (study.optimize(n_trials=TRIALS)), the retry being
    # one of them (it pops the WAITING trial the callback queued); the victim completed k trials before the one
    # it died in (k = 0: it dies in its first). COMPLETE = 3 * TRIALS + k = 9; all trials = COMPLETE + the 1 FAIL.
    k = len(victim_complete)
    assert k == 0, counts
    assert len(complete) == (WORKERS - 1) * TRIALS + k, counts
    assert len(trials) == len(complete) + 1, counts
