"""The `literature` section of params.yaml, typed: every key, its default, its allowed values and why.

This first slice is one task, citation intent on SciCite (background / method / result). Choices are
`Literal[...]`, ranges `bounded(default, ...)`, cross-field rules a `check()` raising `Invalid(key, reason)`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from components.config import Invalid, MonitorConfig, RegisterConfig, TrainConfig, TuneConfig, bounded


@dataclasses.dataclass
class DataSection:
    source: Literal["scicite", "demo"] = "scicite"  # the real SciCite files, or a seeded synthetic copy (offline)
    scicite_dir: str = ""  # folder or URL mirror holding train.txt and dev.txt (e.g. ../shared/data/literature/scicite)
    test_file: str = ""  # optional held-out official test split (same format), kept outside the repository
    val_fraction: float = bounded(0.1, gt=0, lt=0.5)  # share of train carved for validation (by citing paper/text)
    demo_rows: int = bounded(600, ge=30)  # rows the demo generator writes (train; dev gets a fifth of it)
    max_chars: int = bounded(2000, ge=16)  # longer texts fail validation and are refused by the served model
    conflicts: Literal["majority", "fail"] = "majority"  # same text, different labels: majority rule or a failure
    leak: Literal["drop_train", "fail"] = "drop_train"  # train texts also in dev: drop them from train, or fail


@dataclasses.dataclass
class ModelSection:
    encoder: Literal["scratch", "pretrained"] = "scratch"  # a small BERT + WordPiece trained here, or a local model
    encoder_path: str = ""  # pretrained: a local folder for AutoModel.from_pretrained (never a hub id)
    vocab_size: int = bounded(8000, ge=100)  # scratch: WordPiece vocabulary size (trained on train texts only)
    min_frequency: int = bounded(2, ge=1)  # scratch: a word piece seen fewer times in train is not a token
    hidden: int = bounded(128, ge=8)  # scratch: BERT hidden size
    layers: int = bounded(2, ge=1)  # scratch: transformer layers
    heads: int = bounded(4, ge=1)  # scratch: attention heads (must divide hidden)
    max_len: int = bounded(128, ge=8, le=512)  # tokens kept per text, [CLS] and [SEP] included (BERT: <= 512)
    pooling: Literal["mean", "cls"] = "mean"  # text vector: mean of the token states (mask-aware) or [CLS]
    dropout: float = bounded(0.1, ge=0, lt=1)  # dropout before the classification head (and inside scratch BERT)

    def check(self) -> None:
        if self.encoder == "scratch" and self.hidden % self.heads:
            raise Invalid("hidden", f"{self.hidden} is not divisible by heads ({self.heads})")
        if self.encoder == "pretrained" and not self.encoder_path.strip():
            raise Invalid("encoder_path", "encoder=pretrained needs a local model folder (no hub ids are fetched)")


Task = Literal["intent"]  # one registered model per task: literature-<task>[-demo] (components/config.model_name)


@dataclasses.dataclass
class LiteratureSection:
    data: DataSection
    model: ModelSection
    train: TrainConfig
    tune: TuneConfig
    register: RegisterConfig
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    task: Task = "intent"  # intent: SciCite citation intent (the task `dvc repro` trains; others via --set / dvc exp run -S)
