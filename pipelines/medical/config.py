"""The `medical` section of params.yaml, typed: every key, its default and why."""

from __future__ import annotations

import dataclasses

from components.config import MonitorConfig, RegisterConfig, TrainConfig, TuneConfig


@dataclasses.dataclass
class DataSection:
    source: str = "nih"  # nih | nih_folder | demo | mimic
    mirror: str = ""  # nih: folder or URL holding NIH's tables and images_XXX.tar.gz
    archives: list[str] = dataclasses.field(default_factory=list)  # nih: a subset of the 12 archives; [] = all
    folder: str = ""  # nih_folder: NIH's layout with images/*.png
    split_lists: str = ""  # folder with train_val_list.txt / test_list.txt when the source has none
    image_size: int = 1024  # expected side of the raw images (validation)
    val_fraction: float = 0.1  # of train_val patients held out for validation (split by patient)
    shard_size: int = 5000  # images per tar shard
    demo_patients: int = 200  # demo: patients generated
    demo_size: int = 256  # demo: pixels per side
    mimic_jpg_url: str = "https://physionet.org/files/mimic-cxr-jpg/2.1.0/"  # mimic: images, CSVs, SHA256SUMS.txt
    mimic_reports_url: str = "https://physionet.org/files/mimic-cxr/2.1.0/"  # mimic: report texts; "" = none
    mimic_max_studies: int = 0  # mimic: pull the first N labelled studies; 0 = all (over 500 GB)


@dataclasses.dataclass
class InputSection:
    size: int = 224  # network input side (CheXNet: 224)
    max_len: int = 16  # metadata tokens per image
    cache: str = "none"  # none | memory (MONAI CacheDataset of decoded, resized images)


@dataclasses.dataclass
class ModelSection:
    name: str = "multimodal"  # multimodal | densenet121
    d_model: int = 256  # multimodal: fusion width
    n_heads: int = 4  # multimodal: attention heads
    n_text_layers: int = 2  # multimodal: text transformer layers
    dropout: float = 0.1  # multimodal: dropout
    pretrained_path: str = ""  # local DenseNet121 weights (never downloaded); "" = random init


@dataclasses.dataclass
class MedicalSection:
    data: DataSection
    input: InputSection
    model: ModelSection
    train: TrainConfig
    tune: TuneConfig
    register: RegisterConfig
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    bootstrap: int = 1000  # patient-level bootstrap resamples for AUROC intervals
    gradcam_images: int = 6  # overlays drawn in the evaluate stage
