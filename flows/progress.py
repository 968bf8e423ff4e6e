"""What a terminal user sees while a stage runs: one rich progress bar per stage, its figures at
the end, and no TensorFlow start-up chatter. Deployments run without a terminal and pass
``enabled=False``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping


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


def _figure(value: float) -> str:
    """Counts and figures of 1000 or more as integers (``rows 2000``, not ``2e+03``), the rest to 3
    significant digits."""
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{round(value)}"
    return f"{value:.3g}"


def _figures(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{k} {_figure(v)}" for k, v in metrics.items())


class StageBar:
    """``with StageBar("training classifier", total=80, unit="epochs") as bar: bar.advance(loss=…)``;
    the last figures stay on the line when the stage ends. A no-op when not ``enabled``."""

    def __init__(self, description: str, total: int, unit: str, enabled: bool = True, done: int = 0):
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn(unit), TimeElapsedColumn(), TextColumn("{task.fields[figures]}"))
            self._task = self._progress.add_task(description, total=total, completed=done, figures="")

    def __enter__(self) -> "StageBar":
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def advance(self, steps: int = 1, **metrics: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, figures=_figures(metrics))

    def finish(self, **metrics: float) -> None:
        """Mark the stage complete (e.g. stopped early) and show its final figures."""
        if self._progress is not None:
            self._progress.update(self._task, completed=self._progress.tasks[0].total, figures=_figures(metrics))

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def epoch_bar(description: str, epochs: int, enabled: bool, shown: Callable[[str], bool] = lambda k: True):
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
