"""Art benchmark: both generators trained on the shared DSB2018 images, sample quality beside the reference points.

    python benchmarks/art.py [--images ../shared/data/art/dsb2018_stage1_train] [--test-dir PATH]
        [--settings demo cpu] [--epochs N] [--seed 42] [--threads 2] [--out FILE]

Protocol (the project's real stages in-process: pull -> validate -> prepare -> train -> evaluate, the full
profile's data rules, MLflow into a temporary store, no tuning):
1. Data: every image under --images (the 334 fluorescence + 50 H&E images), modality from the folder, checked by
   the validation suite; split by source image (duplicate groups kept together), val 0.1 and test 0.2 of the
   images per modality (seed --seed), or --test-dir's images as the whole test set (kept outside the repository).
   Tiles at the setting's size, background tiles dropped, at most max_tiles_per_image per image.
2. Features: the encoder prepare trains on the training tiles (modality + contrastive), or Inception-v3 when
   --inception names a local TorchScript file.
3. Training: the diffusion UNet and the GAN side by side for --epochs epochs (or the setting's); the checkpoint
   kept is the epoch with the lowest val/fid (diffusion samples against the validation tiles); test never selects.
4. Test metrics (evaluate.py): test_samples per class in the test tiles' class mix, fixed seeds; FID and KID
   (torchmetrics) against the test tiles; floor = real training tiles vs the test tiles, ceiling = Gaussian noise;
   precision / recall (k = 3); memorisation = median over samples of d(nearest training tile) / d(nearest test tile);
   recognition = the share the encoder's modality head assigns to the requested class; samples/s.
Settings: demo = the demo profile's networks (32 px tiles of the images at half size); cpu = wider networks,
32 px, a few epochs (what 2 CPU cores allow in minutes); full = the params.yaml recipe (64 px, 60 epochs: a GPU).
Published numbers are quoted from shared/notes/BENCHMARKS.md: Inception FIDs on other data sets, not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTINGS = {
    "demo": [
        "art.data.size=32",
        "art.data.scale=0.5",
        "art.data.max_tiles_per_image=4",
        "art.diffusion.channels=[16,32,32]",
        "art.diffusion.layers_per_block=1",
        "art.diffusion.steps=10",
        "art.diffusion.ema=0.99",
        "art.gan.z_dim=32",
        "art.gan.w_dim=32",
        "art.gan.mapping_layers=2",
        "art.gan.g_channels=8",
        "art.gan.d_channels=8",
        "art.train.batch_size=16",
        "art.train.max_epochs=4",
        "art.quality.encoder_epochs=3",
        "art.quality.val_samples=16",
        "art.quality.val_steps=5",
        "art.quality.test_samples=48",
    ],
    "cpu": [
        "art.data.size=32",
        "art.data.scale=0.5",
        "art.data.max_tiles_per_image=4",
        "art.diffusion.channels=[32,64,64]",
        "art.diffusion.layers_per_block=1",
        "art.diffusion.steps=20",
        "art.diffusion.ema=0.995",
        "art.gan.z_dim=64",
        "art.gan.w_dim=64",
        "art.gan.g_channels=16",
        "art.gan.d_channels=16",
        "art.train.batch_size=32",
        "art.train.max_epochs=10",
        "art.train.patience=10",
        "art.quality.encoder_epochs=5",
        "art.quality.val_samples=32",
        "art.quality.val_steps=10",
        "art.quality.test_samples=100",
    ],
    "full": [],  # params.yaml as it is (64 px, 60 epochs): a GPU run
}
# shared/notes/BENCHMARKS.md, "Image generation": Inception-feature FIDs on other small sets
PUBLISHED = [
    ("StyleGAN2-ADA, BreCaHAD (1,944 crops)", "FID 15.7", "Inception features, other data: not comparable"),
    ("FastGAN, 100-image sets", "FID 10-41", "Inception features, other data: not comparable"),
]


def run_setting(name: str, args, work: Path) -> dict:
    from components import stages
    from components.config import load_config
    from components.project import Paths
    from pipelines.art.project import ART

    overrides = [
        "profile=full",
        "art.data.source=files",
        f"art.data.images_dir={args.images}",
        f"art.data.test_dir={args.test_dir or ''}",
        f"art.quality.inception_path={args.inception or ''}",
        f"seed={args.seed}",
        *SETTINGS[name],
    ]
    if args.epochs:
        overrides.append(f"art.train.max_epochs={args.epochs}")
    cfg = load_config("art", ART.section, REPO / "params.yaml", overrides=overrides)
    paths = Paths.of("art", work / name / "data")
    seconds = {}
    for stage in ("pull", "validate", "prepare", "train", "evaluate"):
        start = time.perf_counter()
        stages.run(ART, cfg, stage, paths)
        seconds[stage] = time.perf_counter() - start
    meta = json.loads((paths.prepared / "meta.json").read_text())
    run = json.loads((paths.model / "run.json").read_text())
    metrics = json.loads((paths.evaluation / "metrics.json").read_text())
    steps_per_epoch = sum(meta["counts"]["train"][c] for c in meta["classes"]) // cfg.project.train.batch_size
    return {
        "setting": name,
        "size": cfg.project.data.size,
        "tiles": {s: sum(meta["counts"][s][c] for c in meta["classes"]) for s in ("train", "val", "test")},
        "encoder_s": meta["encoder"]["seconds"],
        "epochs": run["epochs"],  # trainer.current_epoch after fit: the epochs run
        "train_s": run["seconds"],
        "steps_per_s": steps_per_epoch * run["epochs"] / run["seconds"],
        "best_val_fid": run["best_score"],
        "metrics": metrics,
        "stage_s": seconds,
        "feature_space": "Inception-v3 (local file)" if args.inception else "encoder trained on the training tiles",
    }


def flat(metrics: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| setting | px | train/val/test tiles | epochs | train s | steps/s | generator | FID | KID | precision | recall "
        "| memorisation | recognition | samples/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = flat(r["metrics"])
        tiles = "/".join(str(r["tiles"][s]) for s in ("train", "val", "test"))
        for generator, p in (("diffusion", "test/"), ("GAN", "test/gan/")):
            lines.append(
                f"| {r['setting']} | {r['size']} | {tiles} | {r['epochs']} | {r['train_s']:.0f} | {r['steps_per_s']:.2f} "
                f"| {generator} | {m[p + 'fid']:.2f} | {m[p + 'kid']:.3f} | {m[p + 'precision']:.2f} | {m[p + 'recall']:.2f} "
                f"| {m[p + 'memorisation_ratio']:.2f} | {m[p + 'recognition']:.2f} | {m[p + 'samples_per_s']:.1f} |"
            )
        lines.append(
            f"| {r['setting']} | {r['size']} | {tiles} | | | | floor (real train tiles) | {m['reference/floor_fid']:.2f} "
            f"| {m['reference/floor_kid']:.3f} | | | {m.get('reference/real_memorisation_ratio', float('nan')):.2f} "
            f"| {m['test/real_recognition']:.2f} | |"
        )
        lines.append(
            f"| {r['setting']} | {r['size']} | {tiles} | | | | ceiling (Gaussian noise) | {m['reference/ceiling_fid']:.2f} "
            f"| {m['reference/ceiling_kid']:.3f} | | | | | |"
        )
    lines += ["", "| published (BENCHMARKS.md) | number | note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in PUBLISHED]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(REPO.parent / "shared/data/art/dsb2018_stage1_train"))
    parser.add_argument("--test-dir", default="", help="held-out images (a folder outside the repository)")
    parser.add_argument("--inception", default="", help="a local TorchScript Inception-v3 (FID in Inception space)")
    parser.add_argument("--settings", nargs="+", default=["demo", "cpu"], choices=sorted(SETTINGS))
    parser.add_argument("--epochs", type=int, default=0, help="override every setting's max_epochs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    parser.add_argument("--work", default="", help="the data folders and MLflow store (default: a new temp folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-art-"))  # kept: the MLflow store holds the sample grids
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    for name in args.settings:
        results.append(run_setting(name, args, work))
        print(f"{name}: done in {sum(results[-1]['stage_s'].values()):.0f} s ({work})", file=sys.stderr, flush=True)
        if args.out:  # each setting as soon as it is measured
            Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"# art benchmark, seed {args.seed}, {device}, torch {torch.__version__}, {platform.python_version()}")
    print(f"# features: {results[0]['feature_space']} (FIDs comparable between these rows only)\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
