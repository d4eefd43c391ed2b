"""The `energy` section of params.yaml, typed: every key, its default and why."""

from __future__ import annotations

import dataclasses

from components.config import MonitorConfig, RegisterConfig, TrainConfig, TuneConfig


@dataclasses.dataclass
class DataSection:
    source: str = "ett"  # ett | opsd | demo
    dataset: str = "ETTh1"  # with source=ett: ETTh1, ETTh2, ETTm1 or ETTm2
    ett_mirror: str = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small"  # URL or folder
    opsd_url: str = "https://raw.githubusercontent.com/jenfly/opsd/master/opsd_germany_daily.csv"
    opsd_start: str = "2014-04-01"  # first day after the last missing wind/solar day (2014-03-30)
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)  # file -> "sha256:<hex>"
    split: str | list[float] = "ett"  # "ett" (standard borders) or [train, val, test] fractions by time
    demo_rows: int = 3000  # hourly rows the demo generator writes


@dataclasses.dataclass
class WindowSection:
    seq_len: int = 336  # history length (PatchTST/42: 336)
    horizon: int = 96  # forecast length: 96, 192, 336 or 720 in the benchmark


@dataclasses.dataclass
class ModelSection:
    name: str = "patchtst"  # patchtst | dlinear | nlinear (seasonal_naive is the baseline)
    patch_len: int = 16  # PatchTST: patch length P
    stride: int = 8  # PatchTST: patch stride S
    n_layers: int = 3  # PatchTST: encoder layers
    n_heads: int = 4  # PatchTST: attention heads
    d_model: int = 16  # PatchTST: latent size (16 on ETTh1)
    d_ff: int = 128  # PatchTST: feed-forward size
    dropout: float = 0.3  # PatchTST: encoder dropout
    head_dropout: float = 0.0  # PatchTST: flatten-head dropout
    revin: bool = True  # PatchTST: reversible instance normalisation
    kernel_size: int = 25  # DLinear: moving-average window
    individual: bool = False  # DLinear: one linear layer per channel


@dataclasses.dataclass
class EnergySection:
    data: DataSection
    window: WindowSection
    model: ModelSection
    train: TrainConfig
    tune: TuneConfig
    register: RegisterConfig
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    target: str = "OT"  # channel shown in forecast plots
