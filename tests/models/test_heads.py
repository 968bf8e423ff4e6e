"""The classes a class head predicts: those its catalogs' labels hold, morphcat's own first."""

from __future__ import annotations

import pytest

from catalogs.labels import CLASSES
from models.heads import classes_present


@pytest.mark.parametrize("labels, want", [
    ([CLASSES[2], None, CLASSES[0], CLASSES[2]], [CLASSES[0], CLASSES[2]]),  # morphcat's order, not the rows'
    (["zebra", CLASSES[1], "apple"], [CLASSES[1], "apple", "zebra"]),  # a scheme's own classes after, sorted
    ([None, None], []),
])
def test_classes_present(labels, want):
    assert classes_present(labels) == want
