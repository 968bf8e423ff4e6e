"""Files written whole or not at all."""

from __future__ import annotations

import pytest

from catalogs.atomic import atomic_path, write_text


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "metrics.json"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_a_write_stopped_midway_leaves_the_previous_file_and_no_part(tmp_path, stop):
    path = tmp_path / "model.keras"
    write_text(path, "previous")
    with pytest.raises(stop), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".keras"  # writers that pick the format by it
        tmp.write_text("half of")
        raise stop()
    assert path.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]
