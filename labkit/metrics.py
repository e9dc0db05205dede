"""Classification metrics as pure functions of labels."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int = 10) -> np.ndarray:
    """``m[t, p]`` = how many samples of true class t were predicted as p."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(
        classes, classes
    )


def format_confusion(matrix: np.ndarray) -> str:
    """The matrix as a text table, true classes down, predicted across."""
    width = max(4, len(str(int(matrix.max()))) + 1)
    header = "true\\pred" + "".join(f"{p:>{width}}" for p in range(matrix.shape[1]))
    rows = [f"{t:>9}" + "".join(f"{v:>{width}}" for v in row) for t, row in enumerate(matrix)]
    return "\n".join([header, *rows])
