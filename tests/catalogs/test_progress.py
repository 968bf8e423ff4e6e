"""The figures a stage bar shows beside its bar."""

import pytest

from catalogs.progress import _figures


@pytest.mark.parametrize("metrics, shown", [
    ({"rows": 2000}, "rows 2000"),                       # a count stays a count
    ({"rows": 2000.0}, "rows 2000"),
    ({"images_per_s": 218.37}, "images_per_s 218"),
    ({"loss": 0.59612, "probs_accuracy": 0.928}, "loss 0.596  probs_accuracy 0.928"),
    ({"lr": 0.0005}, "lr 0.0005"),
    ({"rows": 7}, "rows 7"),
    ({"images_per_s": 1199.1}, "images_per_s 1199"),
])
def test_counts_are_integers_and_measurements_three_digits(metrics, shown):
    assert _figures(metrics) == shown
