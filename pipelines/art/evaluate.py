"""The art project's objective: the quality of generated samples against held-out real tiles.

For each generator (the diffusion model, the GAN), `test_samples` images per class on average, in the
test tiles' class mix, each from a fixed seed, then in one feature space (quality.py):
- FID and KID against the test tiles, beside the floor (real training tiles against the same test tiles:
  what a perfect generator would score at these sample sizes) and the ceiling (noise);
- precision (samples on the real manifold) and recall (the real manifold covered by samples);
- memorisation: each sample's distance to its nearest training tile over that to its nearest test tile
  (a copying generator sits far below 1), with the closest sample-training pairs shown;
- recognition: the share of samples the encoder's modality classifier assigns to the requested class;
- samples per second on this machine.
The feature space is the encoder fitted on the training tiles by prepare, or Inception-v3 when
quality.inception_path names a local TorchScript file: the report says which, and that an encoder FID is
comparable between versions of this project only, never with published FIDs.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from components.project import Evaluation
from pipelines.art.images import CLASSES

SEED_OFFSET = 1_000_000  # evaluation seeds: disjoint from the validation epochs' seeds (0, 1, ...)


def sample_plan(test_labels: np.ndarray, per_class: int) -> tuple[np.ndarray, list[int]]:
    """Labels in the test tiles' class mix (at least one of each class) and one seed per sample."""
    shares = np.bincount(test_labels, minlength=len(CLASSES)) / len(test_labels)
    counts = np.maximum(1, np.round(shares * per_class * len(CLASSES))).astype(int)
    labels = np.repeat(np.arange(len(CLASSES)), counts)
    return labels, [SEED_OFFSET + i for i in range(len(labels))]


def feature_space(cfg, data):
    """(feature network, its name): Inception-v3 from a local file when given, else the prepared encoder."""
    from pipelines.art.data import load_encoder
    from pipelines.art.quality import load_inception

    path = cfg.project.quality.inception_path
    if path:
        return load_inception(path), "Inception-v3 (local weights)"
    return load_encoder(data.prepared), "encoder trained on the training tiles"


def generate(model, name: str, labels: np.ndarray, seeds: list[int]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    images = model.diffusion(labels, seeds) if name == "diffusion" else model.gan(labels, seeds)
    return images, len(seeds) / (time.perf_counter() - start)


def diffusion_fid(model, data, cfg) -> float:
    """test/fid of `model` (an ArtModel) on data's test tiles: what the promotion gate re-scores."""
    from pipelines.art.data import to_float
    from pipelines.art.quality import extract_features, fid_kid

    images, labels = data.arrays("test")
    plan_labels, seeds = sample_plan(labels, cfg.project.quality.test_samples)
    features, _ = feature_space(cfg, data)
    fake, _ = generate(model, "diffusion", plan_labels, seeds)
    return float(fid_kid(extract_features(features, to_float(images)), extract_features(features, fake))["fid"])


def evaluate(model, data, cfg) -> Evaluation:
    import pandas as pd

    from pipelines.art.data import load_encoder, to_float
    from pipelines.art.quality import (
        extract_features,
        fid_kid,
        memorisation,
        precision_recall,
        recognition,
        reference_points,
    )

    q = cfg.project.quality
    train_images, _ = data.arrays("train")
    test_images, test_labels = data.arrays("test")
    train_x, test_x = to_float(train_images), to_float(test_images)
    features, space = feature_space(cfg, data)
    encoder = load_encoder(data.prepared)  # recognition needs the modality head, whatever the FID space
    train_f, test_f = extract_features(features, train_x), extract_features(features, test_x)
    labels, seeds = sample_plan(test_labels, q.test_samples)

    metrics, rows, figures, closest = {}, [], {}, []
    for name in ("diffusion", "gan"):
        fake, rate = generate(model, name, labels, seeds)
        fake_f = extract_features(features, fake)
        scores = {**fid_kid(test_f, fake_f), **precision_recall(test_f, fake_f)}
        copy = memorisation(fake_f, train_f, test_f)
        recognised = recognition(encoder, fake, torch.as_tensor(labels))
        prefix = "test" if name == "diffusion" else "test/gan"
        metrics.update(
            {
                f"{prefix}/fid": scores["fid"],
                f"{prefix}/kid": scores["kid"],
                f"{prefix}/precision": scores["precision"],
                f"{prefix}/recall": scores["recall"],
                f"{prefix}/memorisation_ratio": copy["ratio_median"],
                f"{prefix}/recognition": recognised,
                f"{prefix}/samples_per_s": rate,
            }
        )
        rows.append(
            {
                "generator": name,
                **{k: scores[k] for k in ("fid", "kid", "precision", "recall")},
                "memorisation_ratio": copy["ratio_median"],
                "share_ratio_below_0.5": copy["share_below_0.5"],
                "recognition": recognised,
                "samples_per_s": rate,
            }
        )
        figures[f"samples_{name}"] = grid_figure(
            fake, labels, f"{name} samples ({len(seeds)} drawn, 8 per class shown)"
        )
        for fake_index, train_index, distance in copy["closest"]:
            closest.append(
                {
                    "generator": name,
                    "sample": int(fake_index),
                    "train_tile": int(train_index),
                    "distance": float(distance),
                }
            )
        figures[f"closest_{name}"] = pairs_figure(fake, train_x, copy["closest"][:6], name)

    reference = reference_points(features, train_x, test_x)
    metrics.update({f"reference/{k.replace('/', '_')}": v for k, v in reference.items()})
    for point in ("floor", "ceiling"):
        rows.append(
            {
                "generator": f"{point} ({'real train tiles' if point == 'floor' else 'Gaussian noise'})",
                "fid": reference[f"{point}/fid"],
                "kid": reference[f"{point}/kid"],
            }
        )
    metrics["test/real_recognition"] = recognition(encoder, test_x, torch.as_tensor(test_labels))
    # the memorisation ratio of real validation tiles (in neither set): what an honest generator scores, since
    # the ratio sits below 1 whenever the training set is larger than the test set
    val_images, _ = data.arrays("val")
    val_f = extract_features(features, to_float(val_images))
    metrics["reference/real_memorisation_ratio"] = memorisation(val_f, train_f, test_f)["ratio_median"]
    figures["sdedit"] = sdedit_figure(model)
    table = pd.DataFrame(rows)
    table.attrs["feature_space"] = space
    return Evaluation(
        metrics={k: float(v) for k, v in metrics.items()},
        tables={"quality": table.assign(feature_space=space), "closest_pairs": pd.DataFrame(closest)},
        figures=figures,
    )  # fmt: skip


def grid_figure(images, labels, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.art.pictures import grid

    picture = grid(images, labels, len(CLASSES), per_class=8)
    fig, ax = plt.subplots(figsize=(8, 2.4))
    ax.imshow(picture)
    ax.set_yticks([(k + 0.5) * picture.shape[0] / len(CLASSES) for k in range(len(CLASSES))], CLASSES)
    ax.set_xticks([])
    ax.set_title(title)
    return fig


def pairs_figure(fake, train, pairs, name: str):
    """The samples closest to a training tile, each above that tile: what memorisation would look like."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.art.pictures import to_uint8

    n = max(1, len(pairs))
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
    for k, (fake_index, train_index, distance) in enumerate(pairs):
        axes[0, k].imshow(to_uint8(fake[int(fake_index)][None])[0])
        axes[0, k].set_title(f"d={distance:.2f}", fontsize=8)
        axes[1, k].imshow(to_uint8(train[int(train_index)][None])[0])
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(
        f"{name}: closest sample / training-tile pairs (top: sample, bottom: nearest training tile)", fontsize=9
    )
    return fig


def drawn_sketch(size: int) -> np.ndarray:
    """A schematic a user might draw: three filled circles on a dark ground, (3, S, S) in [-1, 1]."""
    yy, xx = np.mgrid[:size, :size] / size
    picture = np.full((size, size), -0.9, np.float32)
    for cy, cx, r in ((0.3, 0.3, 0.14), (0.65, 0.6, 0.18), (0.3, 0.75, 0.1)):
        picture[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 0.8
    return np.repeat(picture[None], 3, axis=0)


def sdedit_figure(model):
    """The drawn sketch and its SDEdit renderings in each modality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.art.pictures import to_uint8

    sketch = drawn_sketch(model.size)
    fig, axes = plt.subplots(1, 1 + len(CLASSES), figsize=(2.2 * (1 + len(CLASSES)), 2.4))
    axes[0].imshow(to_uint8(sketch[None])[0])
    axes[0].set_title("sketch", fontsize=9)
    for k, name in enumerate(CLASSES):
        axes[k + 1].imshow(to_uint8(model.sdedit(sketch, k, [0]))[0])
        axes[k + 1].set_title(f"SDEdit: {name}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    return fig
