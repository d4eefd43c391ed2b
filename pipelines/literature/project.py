"""The literature plug-in, first slice: citation intent on SciCite (background / method / result).

Ties the SciCite readers (sources/labelled.py), the rules and tokenizer (data.py), the network
(models.py), the LightningModule (module.py), the metrics (evaluate.py) and the served model
(pyfunc.py) to the stage protocol of components/project.py. Its params.yaml section is
`LiteratureSection` (config.py). Not registered in pipelines/registry.py yet (README.md says why).
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
    # select and tune on validation macro-F1 (carved from train), promote on the dev split's macro-F1, re-scored
    objective = Objective(select=Metric("val/macro_f1", "maximize"), gate=Metric("test/macro_f1", "maximize"))
    description = (
        "Citation intent (SciCite: background / method / result) from the citation context alone. "
        "Validation is carved from train by citing paper (where the file names one) or by text, the "
        "official dev split is the test split; the tokenizer is WordPiece trained on train texts only "
        "(scratch BERT) or the local pretrained encoder's own. Metric: macro-F1 over the three classes."
    )
    limitations = (
        "English citation sentences from computer science and medicine (Semantic Scholar); no section or "
        "paper context is used. The scratch encoder has no pre-training and is far below SciBERT's reported "
        "numbers. The demo profile's model is trained on synthetic sentences and says nothing about real text."
    )

    # ---- data -------------------------------------------------------------------------------------

    def pull(self, cfg, out: Path) -> list[Path]:
        from components.fetch import fetch, resolve
        from pipelines.literature.data import DEV_FILE, TRAIN_FILE, heldout_name, write_demo

        data = cfg.project.data
        if data.source == "demo":
            files = write_demo(out, data.demo_rows, cfg.seed)
        else:
            if not data.scicite_dir:
                raise ValueError(
                    "literature.data.scicite_dir is not set: a folder or URL holding SciCite's train/dev files"
                )
            files = [fetch(resolve(data.scicite_dir, name), out / name) for name in (TRAIN_FILE, DEV_FILE)]
        if data.test_file:
            files.append(fetch(data.test_file, out / heldout_name(data.test_file)))
        return files

    def checks(self, cfg, paths: Paths):
        from pipelines.literature.data import scicite_checks

        return scicite_checks(cfg.project.data, paths.raw)

    def prepare(self, cfg, paths: Paths, out: Path) -> dict:
        from pipelines.literature.data import prepare

        return prepare(cfg.project.data, cfg.project.model, paths.raw, cfg.seed, out)

    def datamodule(self, cfg, paths: Paths):
        from pipelines.literature.data import make_datamodule

        t = cfg.project.train
        return make_datamodule(paths.prepared, t.batch_size, t.num_workers)

    # ---- model ------------------------------------------------------------------------------------

    def build_module(self, cfg, datamodule, hparams: dict):
        from pipelines.literature.models import CitationClassifier, build_encoder
        from pipelines.literature.module import CitationModule

        section = cfg.project
        model = dataclasses.replace(section.model, **{k: v for k, v in hparams.items() if k not in OPTIMISER_KEYS})
        encoder = build_encoder(model, datamodule.vocab_size, datamodule.meta["pad_id"])
        net = CitationClassifier(encoder, len(datamodule.labels), model.dropout, model.pooling)
        return CitationModule(
            net,
            {
                "lr": hparams.get("lr", section.train.lr),
                "weight_decay": hparams.get("weight_decay", section.train.weight_decay),
                "dropout": model.dropout,
                "encoder": model.encoder,
                "pooling": model.pooling,
            },
        )

    def search_space(self, cfg, trial) -> dict:
        """Learning rate log-uniform within 3x of params.yaml's, weight decay, dropout (the architecture stays fixed).

        The range follows `train.lr` because a scratch BERT and a pretrained encoder want rates 10-100x apart.
        """
        lr = cfg.project.train.lr
        return {
            "lr": trial.suggest_float("lr", lr / 3, lr * 3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-4, 1e-1, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        }

    def evaluate(self, cfg, net, datamodule, paths: Paths):
        from pipelines.literature.evaluate import evaluate

        return evaluate(net, datamodule)

    def export(self, cfg, module, paths: Paths, out: Path) -> None:
        """model.json (labels, encoder config, tokenizer settings), weights.pt (state_dict), tokenizer.json."""
        import torch

        meta = json.loads((paths.prepared / "meta.json").read_text())
        encoder_config = module.net.encoder.config.to_dict()
        config = {
            "labels": meta["labels"],
            "encoder": module.hparams["encoder"],
            "encoder_config": {k: v for k, v in encoder_config.items() if not k.startswith("_")},
            "max_len": meta["max_len"],
            "pad_id": meta["pad_id"],
            "max_chars": cfg.project.data.max_chars,
            "lr": module.hparams["lr"],
            "weight_decay": module.hparams["weight_decay"],
            "dropout": module.hparams["dropout"],
            "pooling": module.hparams["pooling"],
        }
        (out / "model.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        torch.save(module.net.state_dict(), out / "weights.pt")
        shutil.copy(paths.prepared / "tokenizer.json", out / "tokenizer.json")

    def load_module(self, cfg, paths: Paths):
        from pipelines.literature.pyfunc import CitationIntent

        return CitationIntent.from_dir(paths.model).net

    # ---- serving ----------------------------------------------------------------------------------

    def pyfunc(self, cfg, paths: Paths) -> PyfuncSpec:
        import pandas as pd

        from pipelines.literature.pyfunc import CitationIntent, artifact_paths

        loaded = CitationIntent.from_dir(paths.model)
        texts = pd.read_parquet(paths.prepared / "texts.parquet")
        example = texts[texts["split"] == "val"][["text"]].head(3).reset_index(drop=True)
        return PyfuncSpec(
            python_model=str(Path(__file__).with_name("model_code.py")),  # models-from-code: no pickle
            artifacts=artifact_paths(paths.model),
            input_example=example,
            output_example=loaded.predict(None, example),
        )

    def score(self, python_model, cfg, paths: Paths) -> float:
        """test/macro_f1 of a registered version on the current prepared test split (SciCite dev)."""
        import pandas as pd
        from sklearn.metrics import f1_score

        texts = pd.read_parquet(paths.prepared / "texts.parquet")
        test = texts[texts["split"] == "test"].reset_index(drop=True)
        predicted = python_model.predict(None, test[["text"]])["label"]
        labels = list(python_model.labels)
        return float(f1_score(test["label"], predicted, average="macro", labels=labels, zero_division=0))


LITERATURE = Literature()
