"""Training as a terminal user sees it: TensorFlow imported without its start-up chatter, and a
progress bar per training stage (``catalogs.progress.StageBar``) with the per-epoch figures."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from catalogs.progress import StageBar


def quiet_tensorflow() -> None:
    """Import TensorFlow with the C++ runtime's stderr silenced, once per process.

    TensorFlow 2.21 prints absl/oneDNN/CUDA-probe lines from C++ while it imports and finds its
    devices, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; they are not errors and only bury the
    output. Python exceptions still propagate (they are raised, not printed, in here)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the device probe logs too
        # Retracing notes (models called on batches of new sizes) are advice for developers.
        tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def headline(metric: str) -> bool:
    """The per-epoch figures worth a progress line: losses, accuracies, RMSE."""
    return any(word in metric for word in ("loss", "accuracy", "rmse")) and metric.count("_") <= 2


def epoch_bar(description: str, epochs: int, enabled: bool, shown: Callable[[str], bool] = headline):
    """A Keras callback driving a :class:`StageBar` over training epochs (the per-epoch metrics
    on the line; the bar completes when early stopping ends the run), or None when not enabled."""
    if not enabled:
        return None
    import keras

    class _EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._bar = StageBar(description, epochs, "epochs").__enter__()
            self._last: dict = {}

        def on_epoch_end(self, epoch, logs=None):
            self._last = {k: float(v) for k, v in (logs or {}).items() if shown(k)}
            self._bar.advance(**self._last)

        def on_train_end(self, logs=None):
            self._bar.finish(**self._last)
            self._bar.__exit__(None, None, None)

    return _EpochBar()
