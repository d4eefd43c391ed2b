"""The literature plug-in: four scientific-text tasks, one registered model each (`literature.task`).

intent (SciCite), sentiment (Athar), roles (CSAbstruct / NICTA, Cohan et al.'s [SEP] read-out) and hedging
(BioScope). Each task is a spec in tasks/ (labels, raw files, reader, demo writer, split rule); the rules,
splits and tokenizer (data.py), the networks (models.py), the LightningModule (module.py), the metrics
(evaluate.py) and the served model (pyfunc.py) are shared and tied here to the stage protocol of
components/project.py. Its params.yaml section is `LiteratureSection` (config.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from components.project import Metric, MonitoringModule, Objective, Paths, PyfuncSpec
from pipelines.literature.config import LiteratureSection

OPTIMISER_KEYS = ("lr", "weight_decay")


class Literature(MonitoringModule):
    name = "literature"
    section = LiteratureSection
    # ---- monitoring (owned by the platform engineer): text features, reference, replay streams
    monitoring_module = "pipelines.literature.monitoring"
    replay_streams = ("unshifted", "arxiv", "decade")
    # select and tune on validation macro-F1 (carved from train), promote on the test split's macro-F1, re-scored;
    # every task keeps these names (hedging also logs test/uncertain_f1, its literature's metric)
    objective = Objective(select=Metric("val/macro_f1", "maximize"), gate=Metric("test/macro_f1", "maximize"))
    description = (
        "Scientific-text classification, one registered model per task (literature-<task>): citation intent "
        "(SciCite), citation sentiment (Athar, grouped 10-fold), rhetorical roles of abstract sentences "
        "(CSAbstruct / NICTA-PIBOSO, each sentence classified in its abstract's context) and hedging "
        "(BioScope, sentence uncertain vs certain). Validation is carved from train by group (citing paper, "
        "abstract, document); the tokenizer is WordPiece trained on train texts only (scratch BERT) or the "
        "local pretrained encoder's own (MiniLM). Metric: macro-F1 (hedging also uncertain-class F1)."
    )
    limitations = (
        "English scientific sentences (computer science, biomedicine, ACL papers). Intent uses no section or "
        "paper context. The scratch encoder has no pre-training and is far below the published numbers. "
        "The demo profile's model is trained on synthetic sentences and says nothing about real text."
    )

    # ---- data -------------------------------------------------------------------------------------

    def pull(self, cfg, out: Path) -> list[Path]:
        """The task's raw files: its demo writer (`source: demo`) or copies from its folder / URL mirror."""
        from components.fetch import fetch, resolve
        from pipelines.literature.data import heldout_name, task_spec

        data, task = cfg.project.data, task_spec(cfg)
        if data.source == "demo":
            files = task.write_demo(out, data.demo_rows, cfg.seed)
        else:
            mirror = getattr(data, task.dir_key)
            if not mirror:
                raise ValueError(
                    f"literature.data.{task.dir_key} is not set: a folder or URL holding {', '.join(task.files)} "
                    f"({task.what})"
                )
            files = [fetch(resolve(mirror, name), out / name) for name in task.files]
        if data.test_file:
            files.append(fetch(data.test_file, out / heldout_name(data.test_file)))
        return files

    def checks(self, cfg, paths: Paths):
        from pipelines.literature.data import task_checks, task_spec

        return task_checks(task_spec(cfg), cfg.project.data, paths.raw, cfg.seed)

    def prepare(self, cfg, paths: Paths, out: Path) -> dict:
        from pipelines.literature.data import prepare, task_spec

        return prepare(task_spec(cfg), cfg.project.data, cfg.project.model, paths.raw, cfg.seed, out)

    def datamodule(self, cfg, paths: Paths):
        from pipelines.literature.data import LiteratureData

        t = cfg.project.train
        return LiteratureData(paths.prepared, t.batch_size, t.num_workers, context=cfg.project.model.context)

    # ---- model ------------------------------------------------------------------------------------

    def build_module(self, cfg, datamodule, hparams: dict):
        """The task's network (pooled head, or a head at every [SEP] for roles), after optional masked-LM DAPT,
        with the encoder optionally frozen (`model.freeze_encoder`: after DAPT, so DAPT + frozen is a variant too)."""
        from pipelines.literature.models import build_encoder, classifier, freeze_encoder
        from pipelines.literature.module import LiteratureModule

        section = cfg.project
        model = dataclasses.replace(section.model, **{k: v for k, v in hparams.items() if k not in OPTIMISER_KEYS})
        encoder = build_encoder(model, datamodule.vocab_size, datamodule.meta["pad_id"])
        dapt = self.domain_adapt(cfg, model, encoder, datamodule) if model.dapt_epochs else []
        sep_id = datamodule.sep_id if datamodule.context == "position" else None
        net = classifier(encoder, len(datamodule.labels), model.dropout, datamodule.sequential, model.pooling, sep_id)
        if model.freeze_encoder:
            freeze_encoder(net)
        return LiteratureModule(
            net,
            {
                "lr": hparams.get("lr", section.train.lr),
                "weight_decay": hparams.get("weight_decay", section.train.weight_decay),
                "dropout": model.dropout,
                "encoder": model.encoder,
                "pooling": model.pooling,
                "task": section.task,
                "dapt_epochs": model.dapt_epochs,
                "dapt_losses": dapt,
                "context": datamodule.context,  # what the served model must group by (roles)
                "freeze_encoder": model.freeze_encoder,
            },
        )

    def domain_adapt(self, cfg, model, encoder, datamodule) -> list[float]:
        """Masked-LM on the train role's texts (never val or test) plus `model.dapt_corpus`, before fine-tuning."""
        from tokenizers import Tokenizer

        from pipelines.literature.models import domain_adapt

        texts = datamodule.texts("train")
        if model.dapt_corpus:
            corpus = Path(model.dapt_corpus)
            if not corpus.is_file():
                raise FileNotFoundError(f"literature.model.dapt_corpus {corpus}: no such text file")
            texts += [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
        tokenizer = Tokenizer.from_file(str(datamodule.prepared / "tokenizer.json"))
        t = cfg.project.train
        return domain_adapt(
            encoder,
            tokenizer,
            texts,
            epochs=model.dapt_epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            max_len=model.max_len,
            mlm_probability=model.mlm_probability,
            seed=cfg.seed,
        )

    def search_space(self, cfg, trial) -> dict:
        """Learning rate within 3x of params.yaml's, weight decay, dropout (components.tune.optimiser_space)."""
        from components.tune import optimiser_space

        return optimiser_space(trial, cfg.project.train.lr)

    def evaluate(self, cfg, net, datamodule, paths: Paths):
        from pipelines.literature.evaluate import evaluate

        return evaluate(net, datamodule)

    def export(self, cfg, module, paths: Paths, out: Path) -> None:
        """model.json (task, labels, encoder config, tokenizer settings), weights.pt (state_dict), tokenizer.json."""
        import torch

        meta = json.loads((paths.prepared / "meta.json").read_text())
        encoder_config = module.net.encoder.config.to_dict()
        config = {
            "task": meta["task"],
            "labels": meta["labels"],
            "sequential": meta["sequential"],
            "positive": meta["positive"],
            "encoder": module.hparams["encoder"],
            "encoder_config": {k: v for k, v in encoder_config.items() if not k.startswith("_")},
            "max_len": meta["max_len"],
            "pad_id": meta["pad_id"],
            "max_chars": cfg.project.data.max_chars,
            "lr": module.hparams["lr"],
            "weight_decay": module.hparams["weight_decay"],
            "dropout": module.hparams["dropout"],
            "pooling": module.hparams["pooling"],
            "dapt_epochs": module.hparams.get("dapt_epochs", 0),
            "context": module.hparams.get("context", "abstract"),
            "sep_id": getattr(module.net, "sep_id", None),  # context position: where sentences are cut
            "freeze_encoder": module.hparams.get("freeze_encoder", False),
        }
        (out / "model.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        torch.save(module.net.state_dict(), out / "weights.pt")
        shutil.copy(paths.prepared / "tokenizer.json", out / "tokenizer.json")

    def load_module(self, cfg, paths: Paths):
        from pipelines.literature.pyfunc import LiteratureModel

        return LiteratureModel.from_dir(paths.model).net

    # ---- serving ----------------------------------------------------------------------------------

    def requests(self, paths: Paths, split: str):
        """The prepared rows of `split` as the served model takes them (roles: with abstract_id), and the truth."""
        import pandas as pd

        texts = pd.read_parquet(paths.prepared / "texts.parquet")
        meta = json.loads((paths.prepared / "meta.json").read_text())
        part = texts[texts["split"] == split].reset_index(drop=True)
        request = part[["text"]].copy()
        if meta.get("sequential"):
            request["abstract_id"] = part["group"]
        return request, part["label"]

    def pyfunc(self, cfg, paths: Paths) -> PyfuncSpec:
        from pipelines.literature.pyfunc import LiteratureModel, artifact_paths

        loaded = LiteratureModel.from_dir(paths.model)
        request, _ = self.requests(paths, "val")
        if "abstract_id" in request:  # one whole abstract
            example = request[request["abstract_id"] == request["abstract_id"].iloc[0]].reset_index(drop=True)
        else:
            example = request.head(3).reset_index(drop=True)
        return PyfuncSpec(
            python_model=str(Path(__file__).with_name("model_code.py")),  # models-from-code: no pickle
            artifacts=artifact_paths(paths.model),
            input_example=example,
            output_example=loaded.predict(None, example),
            requirements=("torch", "transformers", "tokenizers", "numpy", "pandas"),
        )

    def score(self, python_model, cfg, paths: Paths) -> float:
        """test/macro_f1 of a registered version on the current prepared test split."""
        from sklearn.metrics import f1_score

        request, truth = self.requests(paths, "test")
        predicted = python_model.predict(None, request)["label"]
        labels = list(python_model.labels)
        return float(f1_score(truth, predicted, average="macro", labels=labels, zero_division=0))

    # ---- the app (pipelines/literature/app.py): classify, search and recommend, topic trends ----

    def app(self, cfg, host: str = "127.0.0.1", port: int = 7860) -> None:
        from pipelines.literature.app import launch

        launch(cfg, Path("data"), host=host, port=port)


LITERATURE = Literature()
