"""The medical plug-in: 14-finding chest X-ray diagnosis (NIH ChestX-ray14 format) for the stage runner.

Sources: `nih` (NIH's archives and tables from a mirror, md5-verified, streamed into shards),
`nih_folder` (NIH's layout unpacked, e.g. the sample in ../shared), `demo` (the generator writing
NIH's exact format). Images are always stored as tar shards for DVC.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from components.project import Metric, MonitoringModule, Objective, Paths, PyfuncSpec
from pipelines.medical.config import MedicalSection
from pipelines.medical.sources import nih as S

# the model card's two paragraphs (components/register.py writes them beside the metrics of each version)
MODEL_CARD = {
    "description": """Multi-label classification of 14 NIH ChestX-ray14 findings. NIH's official patient-wise
        test list; validation split by patient inside train_val; thresholds chosen on validation (Youden);
        per-finding AUROC with patient-level bootstrap 95% intervals. The non-image input is what is known
        before the image is read (NIH: age, sex, view as tokens).""",
    "limitations": """Research use only, not a medical device. NIH labels were mined from reports by NLP
        (>90% accurate by NIH's estimate). Subgroup AUROCs are reported but small subgroups have wide
        intervals. The demo profile's model is trained on synthetic images.""",
}


class Medical(MonitoringModule):
    name = "medical"
    section = MedicalSection
    # select on the validation loss (val/auroc is noisy on small validation sets), promote on the test mean AUROC
    objective = Objective(select=Metric("val/loss", "minimize"), gate=Metric("test/auroc_mean", "maximize"))
    monitoring_module = "pipelines.medical.serving.monitoring"  # features, reference, replay streams
    replay_streams = ("unshifted", "intensity", "age", "view")
    description = " ".join(MODEL_CARD["description"].split())
    limitations = " ".join(MODEL_CARD["limitations"].split())

    # ---- data ---------------------------------------------------------------------------------

    def pull(self, cfg, out: Path) -> list[Path]:
        from pipelines.medical.sources.demo import write_demo
        from pipelines.medical.sources.mimic import pull_mimic

        data = cfg.project.data
        if data.source == "nih":
            S.pull_nih(data.mirror, out, data.archives or None, shard_size=data.shard_size)
        elif data.source == "mimic":  # credentials from PHYSIONET_USERNAME / PHYSIONET_PASSWORD only
            pull_mimic(
                data.mimic_jpg_url, out, data.mimic_reports_url, data.mimic_max_studies, shard_size=data.shard_size
            )
        elif data.source == "nih_folder":  # NIH's layout unpacked; links and a missing folder are refused
            S.pull_nih_folder(data.folder, out, data.split_lists, shard_size=data.shard_size)
        elif data.source == "demo":  # the generator writes NIH's layout, then the same reader runs
            with tempfile.TemporaryDirectory() as tmp:
                folder = write_demo(Path(tmp) / "nih", data.demo_patients, (1, 3), data.demo_size, cfg.seed)
                S.pull_nih_folder(folder, out, data.split_lists, shard_size=data.shard_size)
        else:
            raise ValueError(f"medical.data.source: {data.source!r} is not one of nih, nih_folder, demo, mimic")
        return sorted(p for p in out.rglob("*") if p.is_file())

    def checks(self, cfg, paths: Paths):
        from pipelines.medical.checks import medical_checks

        data = cfg.project.data
        if data.source == "mimic":  # pulled, but no suite reads its layout yet: say so, not a missing-file error
            raise NotImplementedError(
                "medical.data.source 'mimic': the validate stage checks NIH's layout only; "
                "MIMIC-CXR-JPG was pulled (read it with pipelines.medical.sources.mimic.read_mimic) "
                "but has no validation suite yet"
            )
        return medical_checks(paths.raw, data.demo_size if data.source == "demo" else data.image_size)

    def prepare(self, cfg, paths: Paths, out: Path) -> dict:
        import pandas as pd

        from pipelines.medical.data import ENTRIES_PARQUET, prepare
        from pipelines.medical.text import train_tokenizer

        if cfg.project.data.source == "mimic":
            raise NotImplementedError("medical.data.source 'mimic': the prepare stage reads NIH's layout only")
        summary = prepare(paths.raw, out, cfg.project.data.val_fraction, cfg.seed, "metadata")
        entries = pd.read_parquet(out / ENTRIES_PARQUET)
        # the vocabulary is learnt from training rows only
        train_tokenizer(entries.loc[entries["split"] == "train", "text"].tolist(), out_path=out / "tokenizer.json")
        return summary

    def datamodule(self, cfg, paths: Paths):
        from pipelines.medical.data import MedicalDataModule

        inp, train = cfg.project.input, cfg.project.train
        return MedicalDataModule(
            paths.prepared,
            paths.raw / "images",
            inp.size,
            train.batch_size,
            train.num_workers,
            inp.cache,
            tokenizer_path=paths.prepared / "tokenizer.json",
            max_len=inp.max_len,
        )

    # ---- model --------------------------------------------------------------------------------

    def model_hparams(self, cfg, tuned: dict) -> dict:
        from pipelines.medical.models import MODEL_HPARAMS

        model = cfg.project.model
        merged = {
            **dataclasses.asdict(model),
            "max_len": cfg.project.input.max_len,
            **{k: v for k, v in tuned.items() if k not in ("lr", "weight_decay")},
        }
        merged["pretrained_path"] = merged["pretrained_path"] or None
        return {k: merged[k] for k in MODEL_HPARAMS[model.name] if k in merged}

    def build_module(self, cfg, datamodule, hparams: dict):
        from tokenizers import Tokenizer

        from pipelines.medical.module import MedicalClassifier

        section = cfg.project
        vocab = Tokenizer.from_file(str(datamodule.tokenizer_path)).get_vocab_size()
        return MedicalClassifier(
            model=section.model.name,
            model_hparams=self.model_hparams(cfg, hparams),
            vocab_size=vocab if section.model.name == "multimodal" else None,
            n_findings=datamodule.n_findings,
            lr=hparams.get("lr", section.train.lr),
            weight_decay=hparams.get("weight_decay", section.train.weight_decay),
            pos_weight=datamodule.pos_weight,
        )

    def search_space(self, cfg, trial) -> dict:
        params = {
            "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
        }
        if cfg.project.model.name == "multimodal":
            params["dropout"] = trial.suggest_float("dropout", 0.0, 0.3)
        return params

    def export(self, cfg, module, paths: Paths, out: Path) -> None:
        import torch

        hp = module.hparams
        config = {
            "model": hp["model"],
            "hparams": hp["model_hparams"],
            "vocab_size": hp["vocab_size"],
            "findings": list(S.FINDINGS),
            "size": cfg.project.input.size,
            "max_len": cfg.project.input.max_len,
        }
        (out / "model.json").write_text(json.dumps(config, indent=2) + "\n")
        torch.save(module.net.state_dict(), out / "weights.pt")
        shutil.copy(paths.prepared / "tokenizer.json", out / "tokenizer.json")

    def load_module(self, cfg, paths: Paths):
        import torch

        from pipelines.medical.models import build_model

        c = json.loads((paths.model / "model.json").read_text())
        net = build_model(c["model"], len(c["findings"]), c["vocab_size"], **c["hparams"])
        net.load_state_dict(torch.load(paths.model / "weights.pt", map_location="cpu", weights_only=True))
        return net.eval()

    # ---- evaluation and registry --------------------------------------------------------------

    def evaluate(self, cfg, net, datamodule, paths: Paths):
        from pipelines.medical.evaluation.evaluate import evaluate

        boxes = S.read_nih_boxes(paths.raw / S.BOXES_FILE)
        return evaluate(net, datamodule, boxes, cfg.project.bootstrap, cfg.project.gradcam_images, cfg.seed)

    def thresholds_file(self, paths: Paths) -> Path:
        """Operating thresholds chosen on validation by the evaluate stage, as JSON for the model."""
        import pandas as pd

        table = pd.read_csv(paths.evaluation / "plots" / "thresholds.csv")
        path = Path(tempfile.mkdtemp()) / "thresholds.json"
        path.write_text(json.dumps({r.finding: r.threshold for r in table.itertuples()}, indent=2))
        return path

    def pyfunc(self, cfg, paths: Paths) -> PyfuncSpec:
        import pandas as pd

        from pipelines.medical.serving.pyfunc import ChestXrayClassifier, artifact_paths, encode_image
        from pipelines.medical.sources.shards import open_images

        thresholds = self.thresholds_file(paths)
        loaded = ChestXrayClassifier.from_dir(paths.model, thresholds)
        entries = pd.read_parquet(paths.prepared / "entries.parquet")
        first = entries[entries["split"] == "val"].iloc[0]
        image = open_images(paths.raw / "images").read(first["image"])
        example = pd.DataFrame(
            [{"image": encode_image(image), "age": float(first["age"]), "sex": first["sex"], "view": first["view"]}]
        )
        return PyfuncSpec(
            python_model=str(Path(__file__).parent / "serving" / "model_code.py"),
            artifacts=artifact_paths(paths.model, thresholds),
            input_example=example,
            output_example=loaded.predict(None, example),
            # lightning: the served transforms live in data.py beside the data module; transformers: the report encoder
            # PyWavelets: MONAI imports pywt whenever it is installed (imagehash, for art, installs it)
            requirements=("torch", "monai", "transformers", "lightning", "pillow", "numpy", "pandas", "PyWavelets"),
        )

    def score(self, python_model, cfg, paths: Paths) -> float:
        import pandas as pd

        from pipelines.medical.evaluation.evaluate import score
        from pipelines.medical.sources.shards import open_images

        entries = pd.read_parquet(paths.prepared / "entries.parquet")
        return score(python_model, entries, open_images(paths.raw / "images"))

    # ---- the clinician app (pipelines/medical/serving/app.py) ----

    def app(self, cfg, host: str = "127.0.0.1", port: int = 7860) -> None:
        from pipelines.medical.serving.app import launch

        launch(cfg.model_name, host=host, port=port)


MEDICAL = Medical()
