"""The `medical` section of params.yaml, typed: every key, its default, its allowed values and why.

Choices are `Literal[...]`, ranges `bounded(default, ge=...)`, cross-field rules a `check()` raising
`Invalid(key, reason)`; components.config.build() enforces all three when params.yaml is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from components.config import Invalid, MonitorConfig, RegisterConfig, TrainConfig, TuneConfig, bounded


@dataclasses.dataclass
class DataSection:
    source: Literal["nih", "nih_folder", "demo", "mimic"] = "nih"  # NIH archives, NIH unpacked, synthetic, MIMIC
    mirror: str = ""  # nih: folder or URL holding NIH's tables and images_XXX.tar.gz
    archives: list[str] = dataclasses.field(default_factory=list)  # nih: a subset of the 12 archives; [] = all
    folder: str = ""  # nih_folder: NIH's layout with images/*.png
    split_lists: str = ""  # folder with train_val_list.txt / test_list.txt when the source has none
    image_size: int = bounded(1024, ge=1)  # expected side of the raw images (validation)
    val_fraction: float = bounded(0.1, gt=0, lt=1)  # of train_val patients held out for validation (by patient)
    shard_size: int = bounded(5000, ge=1)  # images per tar shard
    demo_patients: int = bounded(200, ge=1)  # demo: patients generated
    demo_size: int = bounded(256, ge=1)  # demo: pixels per side
    mimic_jpg_url: str = "https://physionet.org/files/mimic-cxr-jpg/2.1.0/"  # mimic: images, CSVs, SHA256SUMS.txt
    mimic_reports_url: str = "https://physionet.org/files/mimic-cxr/2.1.0/"  # mimic: report texts; "" = none
    mimic_max_studies: int = bounded(0, ge=0)  # mimic: pull the first N labelled studies; 0 = all (over 500 GB)


@dataclasses.dataclass
class InputSection:
    size: int = bounded(224, ge=1)  # network input side (CheXNet: 224)
    max_len: int = bounded(16, ge=1)  # metadata tokens per image
    cache: Literal["none", "memory"] = "none"  # memory: MONAI CacheDataset of decoded, resized images


@dataclasses.dataclass
class ModelSection:
    name: Literal["multimodal", "densenet121"] = "multimodal"  # image + metadata fusion, or CheXNet's image-only net
    d_model: int = bounded(256, ge=1)  # multimodal: fusion width
    n_heads: int = bounded(4, ge=1)  # multimodal: attention heads
    n_text_layers: int = bounded(2, ge=1)  # multimodal: text transformer layers
    dropout: float = bounded(0.1, ge=0, lt=1)  # multimodal: dropout
    pretrained_path: str = ""  # local DenseNet121 weights (never downloaded); "" = random init
    gate: Literal["none", "biological", "matched"] = "none"  # multimodal: BiologicalAttention ablation; none = off
    text: bool = True  # multimodal: read the metadata text branch; False = the text-off ablation
    spatial_attention: bool = True  # multimodal: the softmax spatial attention gate; False = its ablation

    def check(self) -> None:
        if self.name == "multimodal" and self.d_model % self.n_heads:
            raise Invalid("d_model", f"{self.d_model} is not divisible by n_heads ({self.n_heads})")
        if self.name != "multimodal":  # an ablation the network cannot run would silently repeat the baseline
            for key, default in (("gate", "none"), ("text", True), ("spatial_attention", True)):
                if getattr(self, key) != default:
                    raise Invalid(key, f"{getattr(self, key)!r} applies to multimodal only, not {self.name}")


@dataclasses.dataclass
class MedicalSection:
    data: DataSection
    input: InputSection
    model: ModelSection
    train: TrainConfig
    tune: TuneConfig
    register: RegisterConfig
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    bootstrap: int = bounded(1000, ge=1)  # patient-level bootstrap resamples for AUROC intervals
    gradcam_images: int = bounded(6, ge=0)  # overlays drawn in the evaluate stage (0: none)
