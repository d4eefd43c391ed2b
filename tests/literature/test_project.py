"""The literature plug-in, intent task (SciCite): contract, the whole chain on the demo, the real files.

The project is not registered in pipelines/registry.py yet, so the chain runs here the way
tests/contract/test_contract.py runs registered projects: a temporary params file with a `literature`
section and a shrunk demo profile, every stage in-process against a temporary MLflow store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from components import stages
from components.config import load_config
from components.project import Paths, check_contract
from pipelines.literature.project import LITERATURE

SCICITE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "literature" / "scicite"
BUDGET_S = 60
FULL = {  # the full recipe (real SciCite, a small scratch BERT)
    "data": {"source": "files", "scicite_dir": str(SCICITE), "val_fraction": 0.1},
    "model": {"encoder": "scratch", "hidden": 128, "layers": 2, "heads": 4, "max_len": 128, "dropout": 0.1},
    "train": {"batch_size": 32, "lr": 5e-4, "max_epochs": 10, "patience": 3},
    "tune": {"n_trials": 10, "max_epochs": 3, "pruner": "median"},
    "register": {"margin": 0.0},
}
DEMO = {  # shrunk to seconds: ~300 rows, a one-layer 32-wide BERT, 3 epochs, 1 trial of 1 epoch
    "data": {"source": "demo", "demo_rows": 300},
    "model": {"hidden": 32, "layers": 1, "heads": 2, "max_len": 32, "vocab_size": 400, "min_frequency": 1},
    "train": {"batch_size": 32, "lr": 1e-2, "max_epochs": 5, "patience": 3},
    "tune": {"n_trials": 1, "max_epochs": 1, "pruner": "none"},
}


def params_file(tmp_path: Path, demo: dict = DEMO) -> Path:
    params = {
        "profile": "demo",
        "seed": 0,
        "tracking": {"uri": "sqlite:///mlflow.db"},
        "literature": FULL,
        "profiles": {"demo": {"literature": demo}, "full": {}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def config(tmp_path: Path, profile: str = "demo", overrides=(), demo: dict = DEMO):
    return load_config("literature", LITERATURE.section, params_file(tmp_path, demo), profile, list(overrides))


def test_the_plug_in_passes_the_contract():
    assert check_contract(LITERATURE) == frozenset({"tunable", "monitorable", "replayable", "app"})
    assert LITERATURE.objective.select.name == "val/macro_f1" and LITERATURE.objective.gate.name == "test/macro_f1"


def test_the_demo_runs_pull_to_register_in_seconds(tmp_path, store):
    cfg = config(tmp_path)
    paths = Paths.of("literature", tmp_path / "data")
    start = time.perf_counter()
    for stage in stages.STAGES:
        stages.run(LITERATURE, cfg, stage, paths)
    elapsed = time.perf_counter() - start
    assert elapsed < BUDGET_S, f"literature: pull to register took {elapsed:.0f} s (budget {BUDGET_S} s)"

    decision = json.loads((paths.registry / "decision.json").read_text())
    assert cfg.model_name == "literature-intent-demo" and decision["model"] == "literature-intent-demo"
    assert decision["promoted"] and decision["reason"] == "no champion yet"
    assert decision["metric"] == "test/macro_f1"
    champion = store.get_model_version_by_alias("literature-intent-demo", "champion")
    assert str(champion.version) == str(decision["version"])

    metrics = json.loads((paths.evaluation / "metrics.json").read_text())
    f1 = metrics["test"]["macro_f1"]
    assert f1 > 0.5, f"test macro-F1 {f1:.3f}: a learnable demo should be well above chance (~0.33)"
    assert (paths.evaluation / "plots" / "test_per_class.csv").exists()
    assert (paths.evaluation / "figures" / "test_confusion.png").exists()
    history = pd.read_csv(paths.model / "history.csv")
    assert {"train/loss", "val/loss", "val/macro_f1"} <= set(history.columns)

    model = mlflow.pyfunc.load_model("models:/literature-intent-demo@champion")
    answer = model.predict(pd.DataFrame({"text": ["We used the method of Smith et al. (2001) to measure it."]}))
    assert list(answer.columns) == ["label", "p_background", "p_method", "p_result"]
    assert answer[["p_background", "p_method", "p_result"]].sum(axis=1).round(5).tolist() == [1.0]
    python_model = model.unwrap_python_model()
    with pytest.raises(ValueError, match=r"column 'text', row 1: the text is empty"):
        python_model.predict(None, pd.DataFrame({"text": ["A real citation (Smith, 2001).", "  "]}))
    with pytest.raises(ValueError, match=r"column 'text', row 0: expected text, got int"):
        python_model.predict(None, pd.DataFrame({"text": [3]}))
    with pytest.raises(ValueError, match=r"column 'text', row 0: the text has 2001 characters"):
        python_model.predict(None, pd.DataFrame({"text": ["x" * 2001]}))
    assert LITERATURE.score(python_model, cfg, paths) == pytest.approx(f1, abs=1e-9)


def test_the_real_scicite_pulls_validates_and_prepares(tmp_path, store):
    if not (SCICITE / "train.txt").is_file():
        pytest.fail(f"{SCICITE} is missing: the real SciCite copy must sit in the shared data folder")
    cfg = config(tmp_path, "full", ["literature.model.vocab_size=4000"])
    paths = Paths.of("literature", tmp_path / "data")
    for stage in ("pull", "validate", "prepare"):
        stages.run(LITERATURE, cfg, stage, paths)
    summary = json.loads((paths.prepared / "summary.json").read_text())
    counts = summary["counts"]
    # train 7,320 - 11 rows whose text is also in dev - 2 rows of one tied conflict = 7,307, 10 % carved for val
    assert summary["leaked_train_rows_dropped"] == 11 and summary["conflicts_resolved"] == 1
    assert counts["train"] + counts["val"] == 7307 and counts["test"] == 916
    assert 0.1 * 7307 <= counts["val"] < 0.1 * 7307 + 5
    assert summary["label_counts"]["test"] == {"background": 538, "method": 255, "result": 123}
    texts = pd.read_parquet(paths.prepared / "texts.parquet")
    key = texts["text"].str.split().str.join(" ")
    by_split = {s: set(key[texts["split"] == s]) for s in ("train", "val", "test")}
    assert not by_split["train"] & by_split["test"] and not by_split["train"] & by_split["val"]
    assert not by_split["val"] & by_split["test"]
    # the WordPiece vocabulary saw train texts only: no long word found only outside train is a token of it
    assert summary["tokenizer_fitted_on"] == {"split": "train", "rows": counts["train"]}
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(paths.prepared / "tokenizer.json")).get_vocab()
    words = lambda split: {w for t in texts.loc[texts["split"] == split, "text"].str.lower() for w in t.split()}  # noqa: E731
    train_words = words("train")
    unseen = {w for w in words("test") | words("val") if w.isalpha() and len(w) >= 9} - train_words
    unseen = {w for w in unseen if not any(t.startswith(w) for t in train_words)}
    assert len(unseen) > 50 and not unseen & set(vocab)


def test_a_leak_fails_validation_when_the_rule_is_fail(tmp_path, store):
    from components.validate import ValidationFailed

    cfg = config(tmp_path, overrides=["literature.data.leak=fail"])
    paths = Paths.of("literature", tmp_path / "data")
    stages.run(LITERATURE, cfg, "pull", paths)
    train = (paths.raw / "train.txt").read_text().splitlines()
    (paths.raw / "dev.txt").write_text("\n".join([*train[:2], *(paths.raw / "dev.txt").read_text().splitlines()]))
    with pytest.raises(ValidationFailed, match="leak"):
        stages.run(LITERATURE, cfg, "validate", paths)
    assert not paths.validated.exists()


def test_a_held_out_test_file_loads_by_path(tmp_path, store):
    from pipelines.literature.data import read_split_file
    from pipelines.literature.sources.labelled import write_demo_scicite

    held = tmp_path / "elsewhere" / "test.jsonl"
    held.parent.mkdir()
    written = write_demo_scicite(held, n=30, seed=5, fmt="original")
    assert [r.text for r in read_split_file(held)] == [r.text for r in written]
    cfg = config(tmp_path, overrides=[f"literature.data.test_file={held}"])
    paths = Paths.of("literature", tmp_path / "data")
    for stage in ("pull", "validate", "prepare"):
        stages.run(LITERATURE, cfg, stage, paths)
    summary = json.loads((paths.prepared / "summary.json").read_text())
    assert summary["counts"]["heldout"] == 30 and (paths.raw / "heldout.jsonl").is_file()


def test_a_pretrained_encoder_must_be_a_local_folder(tmp_path):
    from components.config import ConfigError

    with pytest.raises(ConfigError, match="encoder_path"):
        config(tmp_path, overrides=["literature.model.encoder=pretrained"])
    cfg = config(
        tmp_path, overrides=["literature.model.encoder=pretrained", f"literature.model.encoder_path={tmp_path}/none"]
    )
    from pipelines.literature.data import pretrained_tokenizer

    with pytest.raises(FileNotFoundError, match="no such model folder"):
        pretrained_tokenizer(cfg.project.model.encoder_path)


def local_encoder(folder: Path, texts: list[str]) -> Path:
    """A tiny random BERT + its fast tokenizer saved the way a downloaded model folder is laid out."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from pipelines.literature.data import train_wordpiece

    tok = train_wordpiece(texts, vocab_size=300, min_frequency=1)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    hf.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    return folder


def test_a_local_pretrained_encoder_trains_exports_and_serves(tmp_path, store):
    from pipelines.literature.pyfunc import LiteratureModel

    cfg = config(tmp_path)
    paths = Paths.of("literature", tmp_path / "data")
    stages.run(LITERATURE, cfg, "pull", paths)
    texts = [json.loads(line)["text"] for line in (paths.raw / "train.txt").read_text().splitlines()]
    folder = local_encoder(tmp_path / "encoder", texts)
    cfg = config(
        tmp_path,
        overrides=[
            "literature.model.encoder=pretrained",
            f"literature.model.encoder_path={folder}",
            "literature.train.max_epochs=1",
        ],
    )
    for stage in ("validate", "prepare", "train", "evaluate"):
        stages.run(LITERATURE, cfg, stage, paths)
    meta = json.loads((paths.prepared / "meta.json").read_text())
    assert meta["encoder"] == "pretrained" and meta["tokenizer_fitted_on"] is None  # the encoder's own tokenizer
    saved = json.loads((paths.model / "model.json").read_text())
    assert saved["encoder_config"]["hidden_size"] == 16
    answer = LiteratureModel.from_dir(paths.model).predict(
        None, pd.DataFrame({"text": ["We adopted it (Silva, 2001)."]})
    )
    assert answer["label"].iloc[0] in ("background", "method", "result")


# ---- shared by tests/literature/test_task_*.py ------------------------------------------------------------

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "literature"
TASK_DEMO = {**DEMO, "data": {"source": "demo", "demo_rows": 240}, "train": {**DEMO["train"], "max_epochs": 4}}


def demo_chain(tmp_path: Path, task: str, overrides=()):
    """pull -> validate -> prepare -> train -> evaluate of `task` on its shrunk demo; (cfg, paths, metrics)."""
    cfg = config(tmp_path, overrides=[f"literature.task={task}", *overrides], demo=TASK_DEMO)
    paths = Paths.of("literature", tmp_path / "data")
    for stage in ("pull", "validate", "prepare", "train", "evaluate"):
        stages.run(LITERATURE, cfg, stage, paths)
    return cfg, paths, json.loads((paths.evaluation / "metrics.json").read_text())


def real_prepare(tmp_path: Path, task: str, overrides=()) -> tuple[Paths, dict]:
    """pull (from the shared folder) -> validate -> prepare of `task` on the real files; (paths, summary)."""
    cfg = config(tmp_path, "full", [f"literature.task={task}", "literature.model.vocab_size=4000", *overrides])
    paths = Paths.of("literature", tmp_path / "data")
    for stage in ("pull", "validate", "prepare"):
        stages.run(LITERATURE, cfg, stage, paths)
    return paths, json.loads((paths.prepared / "summary.json").read_text())


def groups_by_split(paths: Paths) -> dict[str, set]:
    texts = pd.read_parquet(paths.prepared / "texts.parquet")
    return {s: set(texts.loc[texts["split"] == s, "group"]) for s in texts["split"].unique()}


def assert_groups_disjoint(paths: Paths) -> None:
    groups = groups_by_split(paths)
    for a in groups:
        for b in groups:
            assert a == b or not groups[a] & groups[b], f"groups in both {a} and {b}"
