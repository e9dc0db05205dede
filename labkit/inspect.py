"""Matplotlib figures as pure functions (data in, Figure out); saving is the caller's job."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def confusion_figure(matrix: np.ndarray, title: str = "Confusion matrix") -> Figure:
    """Heatmap of a confusion matrix with counts in every cell, rows normalized for colour."""
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    figure = Figure(figsize=(6, 5.4), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (t, p), count in np.ndenumerate(matrix):
        colour = "white" if share[t, p] > 0.5 else "black"
        axes.text(p, t, str(count), ha="center", va="center", fontsize=7, color=colour)
    classes = range(matrix.shape[0])
    axes.set_xticks(classes)
    axes.set_yticks(classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axes.set_title(f"{title} — accuracy {accuracy:.2%}")
    figure.colorbar(image, ax=axes, label="share of the true class")
    return figure
