"""PNG plots people would rather look at: training curves and a 2-D embedding map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def loss_curves(curves: dict[str, Sequence[float]], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], curves.items(), strict=True):
        ax.plot(range(1, len(values) + 1), values, marker=".")
        ax.set(title=name, xlabel="epoch", ylabel="mean loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def embedding_map(vectors: np.ndarray, labels: Sequence[str], path: Path, title: str = "item vectors (PCA)") -> Path:
    """2-D PCA projection coloured by category."""
    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    fig, ax = plt.subplots(figsize=(8, 6.5))
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    arr = np.array(labels)
    for i, name in enumerate(names):
        pts = xy[arr == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=10, color=cmap(i), label=name, alpha=0.8)
    ax.set_title(title)
    if len(names) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
