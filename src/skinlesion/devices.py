"""Where a Keras variant trains: the devices TensorFlow sees, the distribution strategy, mixed precision
and XLA, from params.yaml's `train:` section (no code change to move a run onto GPUs).

    train.distribute       auto | none | mirrored
        auto      several GPUs of this node: tf.distribute.MirroredStrategy over all of them (the batch
                  size is the global batch, split across the replicas); one GPU or none: no strategy
        none      never a strategy (one device: the first GPU if there is one, else the CPU)
        mirrored  always MirroredStrategy, also over a single device (tests exercise it on the CPU)
    train.mixed_precision  false | true: Keras' mixed_float16 policy on a GPU, mixed_bfloat16 on a CPU;
                  the model's output layer stays float32 (models.py)
    train.xla              auto | true | false: Keras' jit_compile. auto is Keras' own choice (XLA on a GPU
                  without a strategy, never on a CPU), which is what every run did before these params.

With the defaults on a machine without GPUs nothing is set up at all: the same code path, the same model
bytes as before. What was used goes into train.json ("devices") and the log.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEFAULTS = {"distribute": "auto", "mixed_precision": False, "xla": "auto", "input_pipeline": "arrays"}
# what each setting may be (the schema's enums for train.distribute, xla, input_pipeline; a test keeps them equal)
CHOICES = {"distribute": ("auto", "none", "mirrored"), "xla": ("auto", True, False),
           "input_pipeline": ("arrays", "tf_data")}


def settings(train: dict) -> dict:
    """The device settings of params' `train:` section, defaults filled in."""
    out = {key: train.get(key, default) for key, default in DEFAULTS.items()}
    for key, allowed in CHOICES.items():
        if not any(out[key] == a and type(out[key]) is type(a) for a in allowed):  # 1 is not True here
            from .errors import PipelineError

            raise PipelineError(f"train.{key}: {out[key]!r} is not one of {', '.join(map(str, allowed))}")
    return out


@dataclass
class Setup:
    gpus: list[str]
    strategy: object | None = None  # a tf.distribute.Strategy, or None for TensorFlow's default
    policy: str = "float32"
    xla: object = "auto"  # passed to compile(jit_compile=...) only when not "auto"
    input_pipeline: str = "arrays"
    compiled_xla: list[bool] = field(default_factory=list)  # what Keras resolved, per compile

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    def scope(self):
        """Where models, optimizers and metrics must be created (the strategy's scope, if any)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def compile_args(self) -> dict:
        return {} if self.xla == "auto" else {"jit_compile": bool(self.xla)}

    def describe(self) -> dict:
        """For train.json: which devices trained the model, and how."""
        return {
            "gpus": self.gpus,
            "device": f"{len(self.gpus)} GPU(s)" if self.gpus else "CPU",
            "strategy": type(self.strategy).__name__ if self.strategy is not None else None,
            "replicas": self.replicas,
            "mixed_precision": self.policy != "float32",
            "precision_policy": self.policy,
            "xla": self.xla,
            "xla_used": any(self.compiled_xla),
            "input_pipeline": self.input_pipeline,
        }


def setup(train: dict) -> Setup:
    """Read the settings, set the global precision policy, build the strategy; call before any model."""
    import keras
    import tensorflow as tf

    cfg = settings(train)
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    for gpu in tf.config.list_physical_devices("GPU"):
        try:  # take GPU memory as needed (a shared node; evaluation may run beside training)
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass
    strategy = None
    if cfg["distribute"] == "mirrored" or (cfg["distribute"] == "auto" and len(gpus) > 1):
        strategy = tf.distribute.MirroredStrategy()
    policy = "float32"
    if cfg["mixed_precision"]:
        policy = "mixed_float16" if gpus else "mixed_bfloat16"
    if policy != keras.mixed_precision.global_policy().name:
        keras.mixed_precision.set_global_policy(policy)
    found = Setup(gpus=gpus, strategy=strategy, policy=policy, xla=cfg["xla"], input_pipeline=cfg["input_pipeline"])
    log.info("train: devices %s, strategy %s (%d replica(s)), precision %s, XLA %s, input %s",
             ", ".join(gpus) or "CPU only", type(strategy).__name__ if strategy else "none", found.replicas,
             policy, cfg["xla"], cfg["input_pipeline"])
    if not gpus:
        log.info("train: no GPU visible to TensorFlow; training on the CPU")
    return found


def reset() -> None:
    """Back to float32 (tests train several variants in one process)."""
    import keras

    if keras.mixed_precision.global_policy().name != "float32":
        keras.mixed_precision.set_global_policy("float32")
