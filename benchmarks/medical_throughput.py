"""Chest X-ray training and data-loading throughput: the project's Lightning loop vs a plain PyTorch loop.

    python benchmarks/medical_throughput.py [--patients 40] [--size 64] [--batch-size 16] [--steps 8]
                                            [--model densenet121|multimodal] [--threads 2]

Builds demo data through the project's own stages (pull, validate, prepare) in a temporary folder,
then measures, in images per second:

- training: the Lightning Trainer with make_trainer's accelerator settings (no checkpointing, no
  logger, no validation, max_epochs=1, limit_train_batches=warmup+steps) against a plain PyTorch
  loop on the SAME model class (MedicalClassifier, fresh from the same seed), the SAME train loader,
  batch size, loss (module.masked_bce with the datamodule's pos_weight) and optimiser (AdamW, the
  module's lr / weight decay). Both are timed over `--steps` steps after `--warmup` steps, data
  fetching included; the two loops alternate (L, P, L, P, ...) `--repeats` times so a busy machine
  slows both alike, and the medians are reported with their ratio (goal: lightning/plain >= 0.95).
  Both run in fp32; on a GPU a bf16 pair follows (Lightning "bf16-mixed" vs torch.autocast bf16)
  and the GPU utilisation is sampled with nvidia-smi during the timed Lightning steps.
- data loading: the datamodule's train loader (decode from shards + MONAI eval and random transforms
  + collate), the eval pipeline (no augmentation) without cache and with cache="memory" (filling
  the cache, then epochs served from it), and PNG decoding alone (`sources.decode_image` of the same
  shard bytes, read into memory beforehand).

When the train split has fewer than warmup+steps full batches the loader keeps the datamodule's
dataset, collate, batch size and workers but draws its images with a RandomSampler of the needed
length (several shuffled passes), so that the whole measurement fits in one epoch.

The GPU path (bf16, nvidia-smi sampling) has only been run where a GPU was present; on a CPU-only
machine it is skipped and the table says so.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_config, quiet_environment  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=120, help="demo patients generated (1-3 images each)")
    p.add_argument("--size", type=int, default=None, help="network input side; default 64 on CPU, 224 on GPU")
    p.add_argument("--demo-size", type=int, default=None, help="side of the generated images; default --size")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model", choices=["densenet121", "multimodal"], default="densenet121")
    p.add_argument("--steps", type=int, default=20, help="timed steps per training loop")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones (>= 1)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats of each loop (medians reported)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads; default torch's")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers; default the demo profile's")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra params overrides")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "medical_throughput.md"))
    args = p.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1:
        p.error("--warmup, --steps and --repeats must be >= 1")
    return args


# ---- data -------------------------------------------------------------------------------------


def prepare_data(args, workdir: Path):
    from components import stages
    from components.project import Paths
    from pipelines.medical.project import MEDICAL

    overrides = [
        f"medical.data.demo_patients={args.patients}",
        f"medical.data.demo_size={args.demo_size}",
        f"medical.input.size={args.size}",
        f"medical.train.batch_size={args.batch_size}",
        f"medical.model.name={args.model}",
        "medical.input.cache=none",
    ]
    if args.num_workers is not None:
        overrides.append(f"medical.train.num_workers={args.num_workers}")
    cfg = load_config("medical", MEDICAL.section, REPO / "params.yaml", "demo", [*overrides, *args.overrides])
    paths = Paths.of("medical", workdir)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/mlflow.db"  # validate logs its report
    stages.pull(MEDICAL, cfg, paths)
    stages.validate(MEDICAL, cfg, paths)
    stages.prepare(MEDICAL, cfg, paths)
    return cfg, paths


def train_loader(dm, n_batches: int):
    """The datamodule's train loader, or, when it has fewer than n_batches batches, the same
    dataset / collate / batch size / workers drawn by a RandomSampler of n_batches batches."""
    from monai.data import DataLoader
    from torch.utils.data import RandomSampler

    loader = dm.train_dataloader()
    if len(loader) >= n_batches:
        return loader, False
    ds = loader.dataset
    sampler = RandomSampler(ds, replacement=False, num_samples=n_batches * dm.batch_size)
    return DataLoader(
        ds,
        batch_size=dm.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=dm.num_workers,
        collate_fn=loader.collate_fn,
        persistent_workers=dm.num_workers > 0,
    ), True


# ---- training loops ---------------------------------------------------------------------------


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class GpuSampler:
    """nvidia-smi utilisation.gpu (%) every `period` s in a background thread, with timestamps."""

    def __init__(self, period: float = 0.2):
        self.period, self.samples, self._stop = period, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                self.samples.append((time.perf_counter(), float(out.split()[0])))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mean_between(self, t0: float, t1: float) -> float | None:
        values = [u for t, u in self.samples if t0 <= t <= t1]
        return statistics.mean(values) if values else None


def fresh_module(cfg, dm, seed: int):
    import lightning.pytorch as pl

    from pipelines.medical.project import MEDICAL

    pl.seed_everything(seed, workers=True, verbose=False)
    return MEDICAL.build_module(cfg, dm, {})


def lightning_run(cfg, dm, loader, args, precision: str, gpu_util: bool = False) -> dict:
    """One Trainer.fit of warmup+steps batches; the timer starts after the warm-up batches."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback

    from components.train import accelerator_settings

    warmup, steps = args.warmup, args.steps
    times: dict[str, float] = {}

    class Timer(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == warmup - 1:
                sync()
                times["t0"] = time.perf_counter()
            elif batch_idx == warmup + steps - 1:
                sync()
                times["t1"] = time.perf_counter()

    module = fresh_module(cfg, dm, cfg.seed)
    settings = {**accelerator_settings(cfg.project.train), "precision": precision}
    trainer = pl.Trainer(  # make_trainer's settings, minus early stopping / checkpoints / logger / validation
        max_epochs=1,
        limit_train_batches=warmup + steps,
        limit_val_batches=0,
        callbacks=[Timer()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tempfile.gettempdir(),
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        **settings,
    )
    util = None
    if gpu_util:
        with GpuSampler() as sampler:
            trainer.fit(module, train_dataloaders=loader)
        util = sampler.mean_between(times.get("t0", 0.0), times.get("t1", 0.0))
    else:
        trainer.fit(module, train_dataloaders=loader)
    if "t1" not in times:
        raise RuntimeError(f"Lightning ran {trainer.global_step} steps, fewer than warmup+steps={warmup + steps}")
    return {
        "ips": steps * args.batch_size / (times["t1"] - times["t0"]),
        "gpu_util": util,
        "deterministic": settings["deterministic"],
    }


def plain_run(cfg, dm, loader, args, bf16: bool = False) -> dict:
    """The same steps by hand: forward, masked_bce, backward, AdamW step, zero_grad(set_to_none)."""
    import torch

    from components.train import accelerator_settings
    from pipelines.medical.module import masked_bce

    settings = accelerator_settings(cfg.project.train)
    torch.use_deterministic_algorithms(settings["deterministic"])  # as Lightning sets it
    torch.backends.cudnn.benchmark = settings["benchmark"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = fresh_module(cfg, dm, cfg.seed).to(device)
    module.train()
    optimiser = torch.optim.AdamW(module.parameters(), lr=module.lr, weight_decay=module.weight_decay)
    warmup, steps = args.warmup, args.steps
    t0 = t1 = None
    for i, batch in enumerate(loader):
        if i >= warmup + steps:
            break
        image = batch["image"].to(device, non_blocking=True)
        tokens = batch["tokens"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = module(image, tokens)
        loss = masked_bce(logits.float(), labels, module.pos_weight)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        if i == warmup - 1:
            sync()
            t0 = time.perf_counter()
        elif i == warmup + steps - 1:
            sync()
            t1 = time.perf_counter()
    if t0 is None or t1 is None:
        raise RuntimeError("the loader ran out before warmup+steps batches")
    return {"ips": steps * args.batch_size / (t1 - t0)}


def alternate(cfg, dm, loader, args, precision: str, bf16: bool, gpu: bool) -> dict:
    lightning_ips, plain_ips, utils = [], [], []
    for r in range(args.repeats):
        row = lightning_run(cfg, dm, loader, args, precision, gpu_util=gpu)
        lightning_ips.append(row["ips"])
        if row["gpu_util"] is not None:
            utils.append(row["gpu_util"])
        plain_ips.append(plain_run(cfg, dm, loader, args, bf16=bf16)["ips"])
        print(
            f"  [{precision}] repeat {r + 1}: lightning {lightning_ips[-1]:.1f} img/s, plain {plain_ips[-1]:.1f} img/s",
            flush=True,
        )
    lm, pm = statistics.median(lightning_ips), statistics.median(plain_ips)
    paired = statistics.median(a / b for a, b in zip(lightning_ips, plain_ips))  # robust to load drifting between pairs
    return {
        "lightning": lm,
        "plain": pm,
        "ratio": lm / pm,
        "paired": paired,
        "lightning_all": lightning_ips,
        "plain_all": plain_ips,
        "gpu_util": statistics.median(utils) if utils else None,
        "deterministic": row["deterministic"],
    }


# ---- data loading -----------------------------------------------------------------------------


def time_loader(loader, repeats: int) -> float:
    """Median images/s over `repeats` full passes of the loader (after one untimed pass)."""
    rates = []
    for r in range(repeats + 1):
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["labels"])
        if r:
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def data_loading(cfg, paths, dm, loader, args) -> list[tuple[str, float, str]]:
    from monai.data import DataLoader

    from pipelines.medical.data import MedicalDataModule, collate
    from pipelines.medical.sources import nih as S
    from pipelines.medical.sources.shards import open_images

    rows = [
        (
            "train loader: shards -> decode -> MONAI eval + random transforms -> collate",
            time_loader(loader, args.repeats),
            f"{len(loader)} batches of {args.batch_size} per pass",
        )
    ]

    def eval_loader(cache: str):
        edm = MedicalDataModule(
            dm.prepared,
            dm.images,
            dm.size,
            dm.batch_size,
            dm.num_workers,
            cache,
            tokenizer_path=dm.tokenizer_path,
            max_len=dm.max_len,
            augment=False,
        )
        start = time.perf_counter()
        ds = edm.dataset("train")  # the train images through the eval transforms
        fill = time.perf_counter() - start
        return (
            ds,
            fill,
            DataLoader(
                ds,
                batch_size=dm.batch_size,
                shuffle=False,
                num_workers=dm.num_workers,
                collate_fn=collate,
                persistent_workers=dm.num_workers > 0,
            ),
        )

    ds, _, eloader = eval_loader("none")
    n_images = len(ds)
    rows.append(
        (
            "eval pipeline, cache=none: decode -> scale -> resize -> collate",
            time_loader(eloader, args.repeats),
            f"{n_images} train images per pass, in order",
        )
    )
    fills, served = [], []
    for _ in range(args.repeats):
        ds, fill, cloader = eval_loader("memory")
        fills.append(n_images / fill)
        served.append(time_loader(cloader, 1))
    rows.append(
        (
            "eval pipeline, cache=memory: filling the cache (decode, scale, resize)",
            statistics.median(fills),
            f"{n_images} images, CacheDataset workers={max(1, dm.num_workers)}",
        )
    )
    rows.append(
        (
            "eval pipeline, cache=memory: an epoch served from the cache (+ collate)",
            statistics.median(served),
            f"{n_images} images",
        )
    )

    reader = open_images(paths.raw / "images")  # validate keeps a manifest; the images stay in raw/
    names = [item["image"] for item in dm._items(dm.entries[dm.entries["split"] == "train"])]
    blobs = [reader.read(n) for n in names]
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for name, blob in zip(names, blobs):
            S.decode_image(blob, name)
        rates.append(len(blobs) / (time.perf_counter() - start))
    rows.append(
        (
            "PNG decode only (sources.decode_image of the shard bytes, in memory)",
            statistics.median(rates),
            f"{len(blobs)} images of {args.demo_size}x{args.demo_size}",
        )
    )
    return rows


# ---- report -----------------------------------------------------------------------------------


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs"
    if torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(0)}"
    return text


def table(args, info: dict, training: dict[str, dict], loading: list[tuple[str, float, str]]) -> str:
    fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    lines = [
        "# Medical (chest X-ray) throughput",
        "",
        "| setting | value |",
        "|---|---|",
        f"| hardware | {info['hardware']} |",
        f"| torch / lightning | {info['versions']} |",
        f"| torch threads | {info['threads']} |",
        f"| DataLoader workers | {info['workers']} |",
        f"| model | {args.model} ({info['params'] / 1e6:.2f} M parameters) |",
        f"| input size / demo image size | {args.size} / {args.demo_size} |",
        f"| batch size | {args.batch_size} |",
        f"| timed steps per loop (after warm-up) | {args.steps} (+{args.warmup}) |",
        f"| repeats (alternating L, P) | {args.repeats} |",
        f"| train split | {info['train_images']} images{' (resampled loader)' if info['resampled'] else ''} |",
        f"| deterministic algorithms (both loops) | {info['deterministic']} |",
        f"| total run time | {info['seconds']:.0f} s |",
        "",
        "## Training (images/s, median of repeats, data loading included)",
        "",
        "| precision | Lightning | plain PyTorch | Lightning / plain (of medians) | median of paired L/P | GPU util. (Lightning) | Lightning runs | plain runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for precision, r in training.items():
        util = f"{r['gpu_util']:.0f} %" if r["gpu_util"] is not None else "-"
        lines.append(
            f"| {precision} | {r['lightning']:.1f} | {r['plain']:.1f} | {r['ratio']:.3f} | {r['paired']:.3f} | {util} | "
            f"{fmt(r['lightning_all'])} | {fmt(r['plain_all'])} |"
        )
    if not info["gpu"]:
        lines.append("| bf16-mixed (GPU only) | not run: no GPU | | | | | | |")
    lines += ["", "## Data loading (images/s, median)", "", "| pipeline | images/s | notes |", "|---|---|---|"]
    lines += [f"| {name} | {rate:.1f} | {note} |" for name, rate, note in loading]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse_args()
    quiet_environment()
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric", "scifolio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import lightning
    import torch

    gpu = torch.cuda.is_available()
    if args.size is None:
        args.size = 224 if gpu else 64
    if args.demo_size is None:
        args.demo_size = args.size
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    from pipelines.medical.project import MEDICAL

    with tempfile.TemporaryDirectory() as workdir:
        cfg, paths = prepare_data(args, Path(workdir))
        print(f"data ready in {time.perf_counter() - start:.0f} s", flush=True)
        dm = MEDICAL.datamodule(cfg, paths)
        dm.setup("fit")
        loader, resampled = train_loader(dm, args.warmup + args.steps)
        training = {"32-true": alternate(cfg, dm, loader, args, "32-true", bf16=False, gpu=gpu)}
        if gpu and torch.cuda.is_bf16_supported():  # untested where no GPU is present
            training["bf16-mixed"] = alternate(cfg, dm, loader, args, "bf16-mixed", bf16=True, gpu=gpu)
        loading = data_loading(cfg, paths, dm, loader, args)
        info = {
            "hardware": hardware(),
            "versions": f"{torch.__version__} / {lightning.__version__}",
            "threads": torch.get_num_threads(),
            "workers": dm.num_workers,
            "gpu": gpu,
            "params": sum(p.numel() for p in fresh_module(cfg, dm, cfg.seed).parameters()),
            "train_images": len(dm.dataset("train")),
            "resampled": resampled,
            "deterministic": training["32-true"]["deterministic"],
            "seconds": time.perf_counter() - start,
        }
    text = table(args, info, training, loading)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
