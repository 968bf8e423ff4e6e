"""What a terminal user sees while a stage runs: one rich progress bar per stage, with its figures
at the end. Runs without a terminal (deployments) pass ``enabled=False``."""

from __future__ import annotations

from collections.abc import Mapping


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
