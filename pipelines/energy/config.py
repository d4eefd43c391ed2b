"""The `energy` section of params.yaml, typed: every key, its default, its allowed values and why.

Choices are `Literal[...]`, ranges `bounded(default, ge=...)`, cross-field rules a `check()` raising
`Invalid(key, reason)`; components.config.build() enforces all three when params.yaml is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Literal

from components.config import Invalid, MonitorConfig, RegisterConfig, TrainConfig, TuneConfig, bounded, key_path

HASH_LENGTHS = {"sha256": 64, "md5": 32}  # checksum algorithms components.fetch verifies


@dataclasses.dataclass
class DataSection:
    source: Literal["ett", "opsd", "demo"] = "ett"  # ETDataset, Open Power System Data, or synthetic (offline)
    dataset: Literal["ETTh1", "ETTh2", "ETTm1", "ETTm2"] = "ETTh1"  # with source=ett: which ETT file
    ett_mirror: str = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small"  # URL or folder
    opsd_url: str = "https://raw.githubusercontent.com/jenfly/opsd/master/opsd_germany_daily.csv"
    opsd_start: str = "2014-04-01"  # first day after the last missing wind/solar day (2014-03-30)
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)  # file -> "sha256:<hex>"
    split: str | list[float] = "ett"  # "ett" (standard borders) or [train, val, test] fractions by time
    demo_rows: int = bounded(3000, ge=1)  # hourly rows the demo generator writes

    def check(self) -> None:
        split = self.split
        if isinstance(split, str):
            if split != "ett":
                raise Invalid("split", f"{split!r} is not 'ett' or a list [train, val, test] of fractions")
        elif len(split) != 3 or not all(math.isfinite(f) and f > 0 for f in split) or abs(sum(split) - 1) > 1e-6:
            raise Invalid("split", f"{split!r}: expected three positive fractions [train, val, test] summing to 1")
        for name, checksum in self.checksums.items():  # the rule of components.fetch._parse_checksum
            algorithm, _, digest = (part.strip().lower() for part in checksum.partition(":"))
            length = HASH_LENGTHS.get(algorithm)
            if length is None or not re.fullmatch(f"[0-9a-f]{{{length}}}", digest):
                raise Invalid(key_path("checksums", name), f"{checksum!r} is not 'sha256:<64 hex>' or 'md5:<32 hex>'")


@dataclasses.dataclass
class WindowSection:
    seq_len: int = bounded(336, ge=1)  # history length (PatchTST/42: 336)
    horizon: int = bounded(96, ge=1)  # forecast length: 96, 192, 336 or 720 in the benchmark


@dataclasses.dataclass
class ModelSection:
    name: Literal["patchtst", "dlinear", "nlinear"] = "patchtst"  # the forecaster (seasonal_naive is the baseline)
    patch_len: int = bounded(16, ge=1)  # PatchTST: patch length P
    stride: int = bounded(8, ge=1)  # PatchTST: patch stride S
    n_layers: int = bounded(3, ge=1)  # PatchTST: encoder layers
    n_heads: int = bounded(4, ge=1)  # PatchTST: attention heads
    d_model: int = bounded(16, ge=1)  # PatchTST: latent size (16 on ETTh1)
    d_ff: int = bounded(128, ge=1)  # PatchTST: feed-forward size
    dropout: float = bounded(0.3, ge=0, lt=1)  # PatchTST: encoder dropout
    head_dropout: float = bounded(0.0, ge=0, lt=1)  # PatchTST: flatten-head dropout
    revin: bool = True  # PatchTST: reversible instance normalisation
    gate: Literal["none", "biological", "matched"] = "none"  # PatchTST: BiologicalAttention ablation; none = paper
    channel_mixing: bool = False  # PatchTST: attention across channels after the encoder; False = paper
    kernel_size: int = bounded(25, ge=1)  # DLinear: moving-average window (odd, so the average is centred)
    individual: bool = False  # DLinear: one linear layer per channel

    def check(self) -> None:
        if self.name == "patchtst" and self.d_model % self.n_heads:
            raise Invalid("d_model", f"{self.d_model} is not divisible by n_heads ({self.n_heads})")
        if self.name != "patchtst":  # an ablation the network cannot run would silently repeat the baseline
            for key, default in (("gate", "none"), ("channel_mixing", False)):
                if getattr(self, key) != default:
                    raise Invalid(key, f"{getattr(self, key)!r} applies to patchtst only, not {self.name}")
        if self.name == "dlinear" and self.kernel_size % 2 == 0:
            raise Invalid("kernel_size", f"{self.kernel_size} is even; the moving average needs an odd window")


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

    def check(self) -> None:
        if self.model.name == "patchtst" and self.model.patch_len > self.window.seq_len:
            raise Invalid(
                "model.patch_len", f"{self.model.patch_len} is longer than window.seq_len ({self.window.seq_len})"
            )
