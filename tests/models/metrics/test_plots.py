import numpy as np
import pytest

from models.metrics import (
    classification_metrics,
    confusion_matrix_figure,
    plot_confusion_matrix,
    plot_training_curves,
    training_curves_figure,
)
from tests.models.metrics.samples import Y_PRED, Y_TRUE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ============================================================================================
# Confusion-matrix plot
# ============================================================================================


def test_confusion_matrix_plot_tick_labels_follow_matrix_order(tmp_path):
    labels = ["merger", "spiral", "elliptical"]
    m = classification_metrics(Y_TRUE, Y_PRED, labels)
    fig = confusion_matrix_figure(m["confusion_matrix"], m["labels"], "test")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    # Cell (row i, column j) sits at x = j, y = i, annotated with the count ...
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(i, j): str(c) for i, r in enumerate(m["confusion_matrix"]) for j, c in enumerate(r)}
    # ... and coloured by the share of its true class (rows merger, spiral, elliptical).
    np.testing.assert_allclose(ax.images[0].get_array(), [[1, 0, 0], [0, 2 / 3, 1 / 3], [1 / 2, 0, 1 / 2]])

    path = plot_confusion_matrix(m["confusion_matrix"], labels, tmp_path / "plots" / "cm.png", "test")
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("matrix, labels", [([[1, 2], [3, 4]], ["a", "b", "c"]), ([[1, 2, 3]], ["a"])])
def test_confusion_matrix_plot_rejects_mismatched_labels(matrix, labels):
    with pytest.raises(ValueError):
        confusion_matrix_figure(matrix, labels)


def test_confusion_matrix_plot_survives_an_empty_row():
    fig = confusion_matrix_figure([[0, 0], [1, 3]], ["a", "b"])
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), [[0, 0], [1 / 4, 3 / 4]])


# ============================================================================================
# Training curves
# ============================================================================================


def test_training_curves_one_subplot_per_metric_family(tmp_path):
    history = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8], "val_loss": [1.1, 0.8, 0.7],
               "val_accuracy": [0.4, 0.6, 0.65], "rmse": [0.2, 0.15, 0.12]}
    fig = training_curves_figure(history, "run")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "rmse"]
    loss_ax = fig.axes[0]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train", "val"]
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), history["val_loss"])
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_xdata(), [1, 2, 3])
    assert [line.get_label() for line in fig.axes[2].get_lines()] == ["train"]

    path = plot_training_curves(history, tmp_path / "curves.png", "run")
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("history", [{}, {"loss": [], "val_loss": []}])
def test_training_curves_need_values(history):
    with pytest.raises(ValueError):
        training_curves_figure(history)
