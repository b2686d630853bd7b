"""The prediction tasks, declared once: their classes, label column, output layer, loss and training metric.

Every module asks the task for these instead of testing `task == "binary"`: a task is one entry here
(plus its enum in the params schema).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import labels
from .errors import PipelineError


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]
    label_column: str  # the metadata table's integer label column
    activation: str  # of the output layer
    loss: str
    metric: str  # the Keras metric logged per epoch: "auc" or "accuracy"

    @property
    def binary(self) -> bool:
        """One output, P(malignant); else one probability per class, class 0 benign."""
        return len(self.classes) == 2

    @property
    def n_outputs(self) -> int:
        return 1 if self.binary else len(self.classes)

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        """A Keras model's output as scored everywhere: (n,) P(malignant) for binary, (n, k) otherwise."""
        output = np.asarray(output, dtype=np.float64)
        return output[:, 0] if self.binary else output

    def malignancy(self, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(malignant 0/1, malignancy score): the binary question, asked of a multiclass model through
        1 - P(benign)."""
        if self.binary:
            return y, p
        return (np.asarray(y) != 0).astype(int), 1 - p[:, 0]

    def keras_metrics(self) -> list:
        import keras

        return [keras.metrics.AUC(name="auc")] if self.metric == "auc" else [self.metric]


TASKS: dict[str, Task] = {
    "binary": Task("binary", tuple(labels.BINARY_CLASSES), "label", "sigmoid", "binary_crossentropy", "auc"),
    "multiclass": Task("multiclass", tuple(labels.CLASSES), "label_multiclass", "softmax",
                       "sparse_categorical_crossentropy", "accuracy"),
}


def get(name: str) -> Task:
    if name not in TASKS:
        raise PipelineError(f"unknown task '{name}'. Known: {', '.join(TASKS)}.")
    return TASKS[name]
