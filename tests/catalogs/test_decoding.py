"""catalogs.decoding: streamed model inputs, every row either decoded or reported, in row order."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from catalogs import decoding
from catalogs.decoding import STAGE_INPUT, decode_row, iter_model_inputs, to_model_floats
from catalogs.imaging import EMPTY_FILE, MISSING, NOT_AN_IMAGE, PATH_ESCAPE, TOO_SMALL, UNREADABLE, ImageError
from catalogs.inputs import ImageSpec, model_input

SPEC = ImageSpec(size=16, crop=0.5, framing="fixed")


def _write_image(path, value: int, size=48):
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([(x * 5 + value) % 256, (y * 5) % 256, np.full_like(x, value)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def mixed(tmp_path):
    """A catalog root with good images and every kind of per-row problem the decoder maps."""
    root = tmp_path / "root"
    root.mkdir()
    outside = _write_image(tmp_path / "outside.png", 7)
    (root / "link.png").symlink_to(outside)
    paths, expected = [], []  # expected: None for a good row, else its error type
    for i in range(11):
        paths.append(_write_image(root / f"g{i}.png", i * 20).name)
        expected.append(None)
        bad = [("../outside.png", PATH_ESCAPE), (str(outside), PATH_ESCAPE), ("link.png", PATH_ESCAPE),
               ("gone.png", MISSING), ("empty.png", EMPTY_FILE), ("note.jpg", NOT_AN_IMAGE)]
        if i < len(bad):
            paths.append(bad[i][0])
            expected.append(bad[i][1])
    (root / "empty.png").write_bytes(b"")
    (root / "note.jpg").write_text("not a jpeg")
    Image.new("RGB", (8, 8)).save(root / "tiny.png")
    paths.append("tiny.png")
    expected.append(TOO_SMALL)
    return root, paths, expected


def _collect(batches):
    rows, pixels, failures, notes = [], [], [], []
    for batch in batches:
        rows.extend(batch.rows.tolist())
        pixels.append(batch.pixels)
        failures.extend(batch.failures)
        notes.extend(batch.notes)
    return rows, np.concatenate(pixels), failures, notes


def test_every_row_is_decoded_or_reported_exactly_once(mixed):
    root, paths, expected = mixed
    batches = list(iter_model_inputs(root, paths, SPEC, start_row=100, batch_size=4, workers=3))
    assert len(batches) == -(-len(paths) // 4)
    for k, batch in enumerate(batches):  # batch k covers rows 100 + 4k … in order
        covered = sorted(batch.rows.tolist() + [f.row for f in batch.failures])
        assert covered == list(range(100 + 4 * k, min(100 + 4 * k + 4, 100 + len(paths))))
        assert batch.pixels.shape == (len(batch.rows), 16, 16, 3) and batch.pixels.dtype == np.float32
        assert batch.source_sizes.shape == (len(batch.rows), 2)
    rows, pixels, failures, notes = _collect(batches)
    good = [100 + i for i, e in enumerate(expected) if e is None]
    assert rows == good
    assert [(f.row, f.error_type) for f in failures] == [(100 + i, e) for i, e in enumerate(expected) if e]
    assert all(f.stage == STAGE_INPUT and f.message for f in failures)
    assert notes == [None] * len(good)
    for row, px in zip(rows, pixels):  # each row's own pixels, not a neighbour's
        want = to_model_floats(model_input(root / paths[row - 100], SPEC).pixels, SPEC)
        np.testing.assert_array_equal(px, want)


def test_a_batch_of_only_failures_still_reports_them(tmp_path):
    (batch,) = iter_model_inputs(tmp_path, ["a.png", "b.png"], SPEC, batch_size=8)
    assert batch.rows.shape == (0,) and batch.pixels.shape == (0, 16, 16, 3)
    assert [f.error_type for f in batch.failures] == [MISSING, MISSING]


@pytest.mark.parametrize("workers, batch_size", [(1, 1), (2, 5), (4, 64)])
def test_output_does_not_depend_on_threads_or_batching(mixed, workers, batch_size):
    root, paths, _ = mixed
    reference = _collect(iter_model_inputs(root, paths, SPEC, batch_size=3, workers=1))
    got = _collect(iter_model_inputs(root, paths, SPEC, batch_size=batch_size, workers=workers))
    assert got[0] == reference[0] and got[2] == reference[2]
    assert got[1].tobytes() == reference[1].tobytes()


def _counting_model_input(monkeypatch):
    calls = []
    lock = threading.Lock()

    def counted(path, spec):
        with lock:
            calls.append(path)
        return model_input(path, spec)

    monkeypatch.setattr(decoding, "model_input", counted)
    return calls


def test_decoding_runs_at_most_max_in_flight_rows_ahead(tmp_path, monkeypatch):
    _write_image(tmp_path / "a.png", 1)
    calls = _counting_model_input(monkeypatch)
    consumed = 0
    for batch in iter_model_inputs(tmp_path, ["a.png"] * 300, SPEC, batch_size=10, workers=3, max_in_flight=7):
        consumed += len(batch.rows)
        assert len(calls) <= consumed + 7
    assert consumed == len(calls) == 300


def test_stopping_early_stops_decoding(tmp_path, monkeypatch):
    _write_image(tmp_path / "a.png", 1)
    calls = _counting_model_input(monkeypatch)
    stream = iter_model_inputs(tmp_path, ["a.png"] * 1000, SPEC, batch_size=10, workers=2)
    next(stream)
    stream.close()
    assert len(calls) <= 10 + 20


def test_a_bug_is_not_turned_into_per_row_failures(tmp_path, monkeypatch):
    _write_image(tmp_path / "a.png", 1)

    def broken(path, spec):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(decoding, "model_input", broken)
    with pytest.raises(ZeroDivisionError):
        list(iter_model_inputs(tmp_path, ["a.png"], SPEC))


def test_bad_arguments_are_refused(tmp_path):
    for kwargs in ({"batch_size": 0}, {"workers": 0}, {"max_in_flight": 0}):
        with pytest.raises(ValueError):
            next(iter_model_inputs(tmp_path, ["a.png"], SPEC, **kwargs))


def test_decode_row_maps_a_path_escape_to_its_error_type(tmp_path):
    with pytest.raises(ImageError) as info:
        decode_row(tmp_path, "../x.png", SPEC)
    assert info.value.reason == PATH_ESCAPE and "leaves the catalog root" in info.value.message


def test_to_model_floats_scales_to_unit_range():
    px = np.array([[[0, 128, 255]]], np.uint8)
    got = to_model_floats(px, SPEC)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.float32([[[0.0, 128 / 255, 1.0]]]))


def test_training_sees_the_same_bytes_as_annotation(mixed):
    """models.data (the tf.data training pipeline) and the annotation stream agree exactly."""
    pytest.importorskip("tensorflow")
    import pyarrow as pa

    from catalogs.contract import Catalog
    from models.data import decode_images

    root, paths, expected = mixed
    # A JPEG large enough to be decoded in draft mode, where a second decode path would differ.
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (424, 424, 3), np.uint8)).save(root / "big.jpg")
    paths = [*paths, "big.jpg"]
    spec = ImageSpec(size=64, crop=0.5, framing="fixed")
    table = pa.table({"object_id": [f"o{i}" for i in range(len(paths))], "image_path": paths})
    trained = decode_images(Catalog(table, root, "folder"), np.arange(len(paths)), spec)
    rows, pixels, failures, _ = _collect(iter_model_inputs(root, paths, spec, batch_size=4))
    assert rows == trained.good_rows.tolist()
    assert {f"o{f.row}" for f in failures} == set(trained.failures)
    train_pixels = np.stack([x.numpy() for x in trained.dataset])
    assert train_pixels.tobytes() == pixels.tobytes()


def test_a_symlink_loop_is_a_row_failure_not_a_crash(tmp_path):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    (batch,) = iter_model_inputs(tmp_path, ["a.png"], SPEC)
    assert [(f.error_type, "a.png" in f.message) for f in batch.failures] == [(UNREADABLE, True)]
