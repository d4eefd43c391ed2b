"""The `art` section of params.yaml, typed: every key, its default, its allowed values and why.

Choices are `Literal[...]`, ranges `bounded(default, ...)`, cross-field rules a `check()` raising
`Invalid(key, reason)`; components.config.build() enforces all three when params.yaml is loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from components.config import Invalid, MonitorConfig, RegisterConfig, TrainConfig, TuneConfig, bounded

DIFFAUGMENT_OPS = ("color", "translation", "cutout")  # what gan.augment may list (stylegan.diff_augment)
DSB_URL = "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip"  # BBBC038 = DSB2018 stage 1 training set


@dataclasses.dataclass
class DataSection:
    # files: every image under `images_dir` | dsb: the DSB2018 stage1_train.zip from `dsb_url` (a URL, a
    # loopback mirror or a local file) | demo: synthetic cell images in the same formats (offline)
    source: Literal["files", "dsb", "demo"] = "files"
    images_dir: str = "../shared/data/art/dsb2018_stage1_train"  # files: PNG / JPEG / 8- or 16-bit TIFF, any layout
    dsb_url: str = DSB_URL  # dsb: the archive (BBBC publishes no checksum: pin one in dsb_checksum once pulled)
    dsb_checksum: str = ""  # dsb: "sha256:<hex>" verified after download; "" fetches unverified (logged)
    test_dir: str = ""  # a folder of held-out images (outside the repository): the test split, reported
    size: int = bounded(64, ge=16)  # training tile size in pixels (64 on CPU; 128-256 on a GPU)
    scale: float = bounded(1.0, gt=0, le=1)  # resize factor before tiling (0.5: a 256 px image gives 128 px of tiles)
    min_side: int = bounded(64, ge=16)  # images with a smaller side are refused (no tile fits)
    max_side: int = bounded(4096, ge=64)  # larger images are refused (a 20k px slide is not a tile source)
    blank_std: float = bounded(3.0, ge=0)  # tiles this flat (grey std, 0-255), or with < 1 % foreground, are background
    duplicate_bits: int = bounded(
        4, ge=0, le=32
    )  # pHash Hamming distance at or below which two images are near-duplicates
    max_tiles_per_image: int = bounded(16, ge=1)  # caps one large image's weight in the training set
    # training tiles drawn under a random one of the square's 8 symmetries (rotations, flips), for both models:
    # microscopy has no up or left, so they are free data; false is the augmentation ablation (at load, no prepare)
    symmetries: bool = True
    val_fraction: float = bounded(0.1, gt=0, lt=0.5)  # share of SOURCE IMAGES (all their tiles) for validation
    test_fraction: float = bounded(0.2, gt=0, lt=0.5)  # share of source images for test (when no test_dir)
    demo_fluorescence: int = bounded(24, ge=4)  # demo: fluorescence images written
    demo_histology: int = bounded(8, ge=2)  # demo: histology images written
    demo_side: int = bounded(128, ge=32)  # demo: image side in pixels (the real ones are 256; smaller is faster)

    def check(self) -> None:
        if self.min_side >= self.max_side:
            raise Invalid("min_side", f"{self.min_side} is not below max_side ({self.max_side})")
        if self.size > self.min_side * self.scale:
            raise Invalid(
                "size", f"a {self.size} px tile does not fit a {self.min_side} px image scaled by {self.scale}"
            )
        if self.size & (self.size - 1):
            raise Invalid("size", f"{self.size} is not a power of two (the UNet and the GAN halve it down to 4 px)")


@dataclasses.dataclass
class DiffusionSection:
    channels: list[int] = dataclasses.field(default_factory=lambda: [64, 128, 128])  # UNet widths per resolution
    layers_per_block: int = bounded(2, ge=1)  # ResNet blocks per resolution (diffusers' default)
    attention: bool = True  # self-attention at the lowest resolution (global cell arrangement)
    timesteps: int = bounded(1000, ge=10)  # DDPM training steps (Ho et al. 2020)
    schedule: Literal["squaredcos_cap_v2", "linear"] = "squaredcos_cap_v2"  # cosine: better at low resolution
    cond_drop: float = bounded(0.1, ge=0, lt=1)  # share of training steps with the class dropped (for guidance)
    steps: int = bounded(50, ge=1)  # DDIM sampling steps by default (1000 DDPM steps are too slow to serve)
    guidance: float = bounded(2.0, ge=0)  # classifier-free guidance scale by default (1: conditional, 0: unconditional)
    lr: float = bounded(2e-4, gt=0)  # AdamW (the UNet's own optimiser)
    ema: float = bounded(0.999, ge=0, lt=1)  # EMA of the UNet's weights, what is sampled from (0: off)
    # class-conditional (the modality steers sampling, with guidance); false: every step trains the null class
    # and sampling ignores the requested label and the guidance (the conditioning ablation)
    conditional: bool = True


@dataclasses.dataclass
class GanSection:
    z_dim: int = bounded(128, ge=8)  # latent size
    w_dim: int = bounded(128, ge=8)  # style size
    mapping_layers: int = bounded(4, ge=1)  # StyleGAN uses 8; 4 suffices for two classes and a few hundred images
    g_channels: int = bounded(64, ge=8)  # generator width at the output resolution (doubles towards 4 px)
    d_channels: int = bounded(64, ge=8)  # discriminator width at the input resolution
    lr: float = bounded(2e-3, gt=0)  # Adam, betas (0, 0.99) as in StyleGAN2
    r1_gamma: float = bounded(1.0, ge=0)  # R1 weight (StyleGAN2-ADA's small-data setting is 0.1-10)
    r1_every: int = bounded(4, ge=1)  # lazy regularisation: R1 every this many D steps, scaled up to match
    augment: str = "color,translation,cutout"  # DiffAugment policy ("" off): the small-data lifeline
    # class-conditional G and projection D; false: both see one constant class, so the label steers nothing
    conditional: bool = True
    mixing: float = bounded(0.9, ge=0, le=1)  # style-mixing probability during training
    truncation: float = bounded(1.0, ge=0, le=1)  # served samples: 1 = none; lower trades variety for fidelity

    def check(self) -> None:  # a typo in a policy (or an ablation variant) fails at load, not after prepare
        unknown = [op for op in (p.strip() for p in self.augment.split(",")) if op and op not in DIFFAUGMENT_OPS]
        if unknown:
            raise Invalid("augment", f"unknown DiffAugment op(s) {unknown}; choose from {', '.join(DIFFAUGMENT_OPS)}")


@dataclasses.dataclass
class QualitySection:
    encoder_epochs: int = bounded(15, ge=1)  # the feature encoder's training (prepare), on train tiles only
    inception_path: str = ""  # a local TorchScript Inception-v3 (inception-2015-12-05.pt): FID in Inception space
    val_samples: int = bounded(64, ge=4)  # per class, generated at every validation epoch for val/fid
    test_samples: int = bounded(200, ge=4)  # per class, generated by evaluate (and the gate's rescore)
    val_steps: int = bounded(20, ge=1)  # DDIM steps of the validation samples (cheaper than serving's)
    grid: int = bounded(8, ge=1)  # samples per class in the logged grids


@dataclasses.dataclass
class ServeSection:
    max_count: int = bounded(16, ge=1)  # images per request row (more: 422)
    max_steps: int = bounded(200, ge=1)  # DDIM steps per request (more: 422)
    max_guidance: float = bounded(10.0, gt=0)  # guidance scale cap
    max_sketch_bytes: int = bounded(4_000_000, ge=1000)  # an SDEdit sketch upload's decoded size cap


@dataclasses.dataclass
class ArtSection:
    data: DataSection
    diffusion: DiffusionSection
    gan: GanSection
    train: TrainConfig
    tune: TuneConfig
    register: RegisterConfig
    quality: QualitySection = dataclasses.field(default_factory=QualitySection)
    serve: ServeSection = dataclasses.field(default_factory=ServeSection)
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
