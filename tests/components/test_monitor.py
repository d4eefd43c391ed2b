"""The drift decision (components/monitor.py) on frames with known shifts, the log window, and the
promotion lock (components/register.py) with two gates racing in two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from components.config import MonitorConfig
from components.inference_log import append_record
from components.monitor import FeatureSpec, compare, read_window
from tests.components.toy_project import OneRowPerRequest

SPEC = FeatureSpec(
    numerical=["a", "b"], categorical=["sex"], outputs=["p"], embeddings={"emb": [f"e{i}" for i in range(8)]}
)


def frame(n: int, rng, shift: float = 0.0, emb_shift: float = 0.0, male: float = 0.5) -> pd.DataFrame:
    data = pd.DataFrame(
        {
            "a": rng.normal(shift, 1, n),
            "b": rng.normal(0, 1, n),
            "sex": np.where(rng.random(n) < male, "M", "F"),
            "p": rng.uniform(0, 1, n),
        }
    )
    for i in range(8):
        data[f"e{i}"] = rng.normal(emb_shift, 1, n)
    return data


def test_unshifted_data_is_not_flagged_and_the_report_names_every_column():
    rng = np.random.default_rng(0)
    _, decision = compare(frame(400, rng), frame(80, rng), SPEC, MonitorConfig())
    assert decision["drift"] is False, decision["reasons"]
    assert set(decision["scores"]) == {"a", "b", "sex", "p"}
    assert decision["thresholds"]["p_value"] == pytest.approx(0.05 / 4)  # Bonferroni over 4 columns
    assert decision["embeddings"]["emb"]["drift"] is False


def test_a_shifted_input_column_is_flagged_by_name():
    rng = np.random.default_rng(1)
    _, decision = compare(frame(400, rng), frame(80, rng, shift=1.5), SPEC, MonitorConfig())
    assert decision["drift"] is True
    assert decision["drifted_inputs"] == ["a"] and decision["drifted_outputs"] == []
    assert "a (ks p=" in decision["reasons"][0]


def test_a_changed_category_mix_and_shifted_embeddings_are_flagged():
    rng = np.random.default_rng(2)
    _, decision = compare(frame(400, rng), frame(80, rng, male=0.95, emb_shift=1.0), SPEC, MonitorConfig())
    assert "sex" in decision["drifted_inputs"]
    assert decision["embeddings"]["emb"]["drift"] is True and decision["embeddings"]["emb"]["auroc"] > 0.8


def test_effect_size_mode_ignores_tiny_shifts_that_ks_would_flag():
    rng = np.random.default_rng(3)
    spec = FeatureSpec(numerical=["a", "b"], categorical=[], outputs=["p"])
    reference, current = frame(3000, rng), frame(3000, rng, shift=0.3)  # huge n: K-S sees 0.3 std
    _, by_p = compare(reference, current, spec, MonitorConfig())
    assert by_p["drift"] is True
    effect = MonitorConfig(column_test="wasserstein", effect_size=1.0, drift_share=0.5)
    _, by_effect = compare(reference, current, spec, effect)
    assert by_effect["drift"] is False and by_effect["scores"]["a"] == pytest.approx(0.3, abs=0.1)
    _, big = compare(reference, frame(3000, rng, shift=2.0).assign(b=lambda d: d.b * 3), spec, effect)
    assert big["drift"] is True and big["drifted_inputs"] == ["a", "b"]


def test_a_constant_reference_column_is_reported_not_tested():
    rng = np.random.default_rng(4)
    reference = frame(200, rng).assign(b=1.0)
    _, decision = compare(reference, frame(50, rng), SPEC, MonitorConfig())
    assert decision["untested_constant_columns"] == ["b"] and "b" not in decision["scores"]


def test_unknown_column_test_is_a_clear_error():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="column_test"):
        compare(frame(50, rng), frame(50, rng), SPEC, MonitorConfig(column_test="psi"))


def test_read_window_keeps_answered_full_records_of_the_prefix_newest_last(tmp_path):
    log = tmp_path / "v1.jsonl"

    def record(i, status=200, prefix="replay-a-", inputs=True):
        append_record(
            log,
            {
                "status": status,
                "client_request_id": f"{prefix}{i}",
                "inputs": [{"x": i}, {"x": i + 0.5}] if inputs else {"summary": True},
                "outputs": [{"y": 1}, {"y": 2}],
            },
        )

    for i in range(5):
        record(i)
    record(100, status=422)  # rejected: not traffic the model answered
    record(200, inputs=False)  # logged as a summary: cannot be turned into features
    record(300, prefix="other-")
    window = read_window(OneRowPerRequest, None, log, window=4, request_prefix="replay-a-")
    assert window["x"].tolist() == [3, 3.5, 4, 4.5]  # the newest 4 items, in log order
    assert len(read_window(OneRowPerRequest, None, log, window=100)) == 12
    assert read_window(OneRowPerRequest, None, tmp_path / "missing.jsonl", window=10).empty


GATE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import mlflow
    from components.project import Metric
    from components.register import gate, rescored
    mlflow.set_tracking_uri(sys.argv[1])
    version = sys.argv[2]
    def score(python_model):
        time.sleep(1.5)  # both processes are inside the gate at the same time without the lock
        return python_model.predict(None, None)
    decision = gate("race", version, Metric("score", "maximize"), 0.0, rescored(score))
    print(json.dumps(decision.to_dict()))
""")

MODEL_CODE = textwrap.dedent("""
    import mlflow.pyfunc
    from mlflow.models import set_model

    class Constant(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            self.value = float(open(context.artifacts["value"]).read())

        def predict(self, context, model_input, params=None):
            return self.value

    set_model(Constant())
""")


def test_two_gates_racing_cannot_both_promote(tmp_path, repo_root):
    """v1 is champion (score 1); v2 and v3 both score 2. Serialised, the first promotes and the
    second ties the new champion and is refused; without the lock both would beat v1 and promote."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = tmp_path / "model_code.py"
    code.write_text(MODEL_CODE)
    client = mlflow.MlflowClient(tracking_uri=uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("race")
        for value in (1.0, 2.0, 2.0):
            (tmp_path / "value.txt").write_text(str(value))
            with mlflow.start_run():
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=str(code), artifacts={"value": str(tmp_path / "value.txt")}
                )
            mlflow.register_model(info.model_uri, "race")
        client.set_registered_model_alias("race", "champion", "1")
    finally:
        mlflow.set_tracking_uri(previous)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(repo_root)
    script = tmp_path / "gate.py"
    script.write_text(GATE_SCRIPT)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), uri, v],
            cwd=tmp_path,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for v in ("2", "3")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    decisions = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(d["promoted"] for d in decisions) == [False, True], decisions
    winner = next(d for d in decisions if d["promoted"])
    loser = next(d for d in decisions if not d["promoted"])
    assert str(loser["champion_version"]) == str(winner["version"])  # judged against the NEW champion
    assert "does not beat" in loser["reason"]
    assert str(client.get_model_version_by_alias("race", "champion").version) == str(winner["version"])
