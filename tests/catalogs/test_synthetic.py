"""The embedded synthetic survey: determinism, catalog contract, vote model, mixes, arguments."""

from __future__ import annotations

import inspect
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.ndimage
from PIL import Image

from catalogs import synthetic
from catalogs.labels import CLASSES, derive_labels
from catalogs.synthetic import MIXES, render_survey, sample_truth, simulate_votes
from catalogs.tree import GZ2_TREE

EXPECTED_COLUMNS = (
    ["object_id", "image_path", "ra", "dec"]
    + list(GZ2_TREE.debiased_columns)
    + ["label", "truth_class", "mask_path"]
)


def _files(out: Path, table: pa.Table) -> dict[str, bytes]:
    paths = table.column("image_path").to_pylist() + table.column("mask_path").to_pylist()
    return {p: (out / p).read_bytes() for p in paths}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, pa.Table]:
    out = tmp_path_factory.mktemp("synth-small")
    return out, render_survey(out, 12, seed=3, size=64, mix="balanced", workers=1)


def test_same_seed_is_identical_whatever_the_worker_count(small, tmp_path):
    out1, t1 = small
    t2 = render_survey(tmp_path / "w2", 12, seed=3, size=64, mix="balanced", workers=2)
    assert t1.equals(t2)
    assert _files(out1, t1) == _files(tmp_path / "w2", t2)


def test_half_resolution_path_is_deterministic_and_full_size(tmp_path):
    # frames above 256 px are rendered at half resolution and upsampled
    a = render_survey(tmp_path / "a", 2, seed=5, size=300, workers=1)
    b = render_survey(tmp_path / "b", 2, seed=5, size=300, workers=1)
    assert a.equals(b)
    assert _files(tmp_path / "a", a) == _files(tmp_path / "b", b)
    for p in a.column("image_path").to_pylist():
        assert Image.open(tmp_path / "a" / p).size == (300, 300)


def test_different_seed_gives_a_different_survey(small, tmp_path):
    out1, t1 = small
    t2 = render_survey(tmp_path, 12, seed=4, size=64, mix="balanced", workers=1)
    cols = list(GZ2_TREE.debiased_columns)
    f1 = np.column_stack([t1.column(c).to_numpy() for c in cols])
    f2 = np.column_stack([t2.column(c).to_numpy() for c in cols])
    assert not np.array_equal(f1, f2)
    assert t1.column("ra").to_pylist() != t2.column("ra").to_pylist()
    img1 = sorted(_files(out1, t1)[p] for p in t1.column("image_path").to_pylist())
    img2 = sorted(_files(tmp_path, t2)[p] for p in t2.column("image_path").to_pylist())
    assert not set(img1) & set(img2)


def test_columns_types_and_paths(small):
    out, t = small
    assert t.column_names == EXPECTED_COLUMNS
    for name in ("object_id", "image_path", "label", "truth_class", "mask_path"):
        assert t.schema.field(name).type == pa.string(), name
    for name in ["ra", "dec", *GZ2_TREE.debiased_columns]:
        assert t.schema.field(name).type == pa.float64(), name
    ids = t.column("object_id").to_pylist()
    assert ids == [f"synth-3-{i:06d}" for i in range(12)]
    assert ids == sorted(ids)
    assert t.column("image_path").to_pylist() == [f"images/{i}.jpg" for i in ids]
    assert t.column("mask_path").to_pylist() == [f"masks/{i}.png" for i in ids]
    assert set(t.column("label").to_pylist()) <= set(CLASSES)
    assert set(t.column("truth_class").to_pylist()) <= set(CLASSES)
    ra, dec = t.column("ra").to_numpy(), t.column("dec").to_numpy()
    assert ((ra >= 150) & (ra <= 160)).all() and ((dec >= 0) & (dec <= 10)).all()


def test_images_are_rgb_and_masks_cover_part_of_the_frame(small):
    out, t = small
    for img_rel, mask_rel in zip(t.column("image_path").to_pylist(), t.column("mask_path").to_pylist()):
        img = Image.open(out / img_rel)
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 64)
        assert np.asarray(img).max() > 100  # a galaxy, not an empty frame
        mask = Image.open(out / mask_rel)
        assert mask.format == "PNG" and mask.mode == "L" and mask.size == (64, 64)
        m = np.asarray(mask)
        assert set(np.unique(m)) <= {0, 255}
        assert 0 < (m == 255).sum() < m.size // 2
        # the footprint is where the image is bright: the galaxy, not the sky
        lum = np.asarray(img.convert("L"), dtype=float)
        assert lum[m == 255].mean() > lum[m == 0].mean() + 20


def test_label_column_is_derive_labels_of_the_fractions(small):
    _, t = small
    cols = {c: t.column(c).to_numpy() for c in GZ2_TREE.debiased_columns}
    assert list(derive_labels(cols)) == t.column("label").to_pylist()


def _check_fractions(f: np.ndarray) -> None:
    """Reached questions sum to 1, unreached are all 0, and a question is reached exactly
    when its parent answer got votes."""
    assert f.shape == (len(GZ2_TREE),)
    assert ((f >= 0) & (f <= 1)).all()
    for (q, sl), parent in zip(GZ2_TREE.question_slices, GZ2_TREE.parent_index):
        total = f[sl].sum()
        reached = parent is None or f[parent] > 0
        if q.key == "t06":  # only "star or artifact" from every volunteer ends before Q6
            reached = f[GZ2_TREE.answer("t01", "a03").index] < 1
        if reached:
            assert abs(total - 1.0) < 1e-9, (q.key, total)
        else:
            assert total == 0.0, q.key


def test_vote_fractions_from_the_survey(small):
    _, t = small
    f = np.column_stack([t.column(c).to_numpy() for c in GZ2_TREE.debiased_columns])
    for row in f:
        _check_fractions(row)


def test_vote_fractions_from_the_vote_model():
    rng = np.random.default_rng(11)
    seen_unreached = 0
    for i in range(100):
        truth = sample_truth(CLASSES[i % len(CLASSES)], rng)
        f = simulate_votes(truth, rng)
        _check_fractions(f)
        seen_unreached += int(f[GZ2_TREE.question_slices[-1][1]].sum() == 0)
    assert seen_unreached > 0  # ellipticals never reach the arm-count question


def test_vote_model_recovers_the_truth_class():
    rng = np.random.default_rng(12)
    rows, truths = [], []
    for i in range(250):
        truth = sample_truth(CLASSES[i % len(CLASSES)], rng)
        rows.append(simulate_votes(truth, rng))
        truths.append(truth["class"])
    f = np.array(rows)
    labels = derive_labels({c: f[:, j] for j, c in enumerate(GZ2_TREE.debiased_columns)})
    agree = np.mean(labels == np.array(truths, dtype=object))
    assert agree >= 0.85, agree
    per_class = {c: np.mean(labels[np.array(truths) == c] == c) for c in CLASSES}
    assert min(per_class.values()) >= 0.7, per_class
    # fractions are confident but not all 0/1
    spiral_frac = f[np.array(truths) == "spiral", GZ2_TREE.answer("t04", "a08").index]
    assert 0.6 < np.median(spiral_frac) < 1.0
    assert len(np.unique(spiral_frac)) > 10


def test_simulate_votes_is_deterministic_and_accepts_minimal_truth():
    a = simulate_votes({"class": "elliptical", "kind": "elliptical"}, 5)
    b = simulate_votes({"class": "elliptical", "kind": "elliptical"}, 5)
    assert np.array_equal(a, b)
    assert a[GZ2_TREE.answer("t01", "a01").index] >= 0.6
    _check_fractions(a)


# The votes walk GZ2_TREE: one row per question of the tree, its answers and its parent answer.
TREE_ROWS = [pytest.param(q, sl, parent, id=q.key)
             for (q, sl), parent in zip(GZ2_TREE.question_slices, GZ2_TREE.parent_index)]


@pytest.fixture(scope="module")
def sampled_fractions() -> np.ndarray:
    rng = np.random.default_rng(13)
    return np.array([simulate_votes(sample_truth(CLASSES[i % len(CLASSES)], rng), rng) for i in range(500)])


@pytest.mark.parametrize(("question", "sl", "parent"), TREE_ROWS)
def test_fractions_reach_a_question_exactly_when_its_parent_answer_has_votes(
        sampled_fractions, question, sl, parent):
    totals = sampled_fractions[:, sl].sum(axis=1)
    reached = np.ones(len(totals), bool) if parent is None else sampled_fractions[:, parent] > 0
    np.testing.assert_allclose(totals[reached], 1.0, atol=1e-9, err_msg=question.key)
    assert (totals[~reached] == 0).all(), question.key
    if parent is not None:  # both sides of the rule occur, so neither is checked vacuously
        assert reached.any() and not reached.all(), question.key


@pytest.fixture(scope="module")
def volunteer_walks() -> list[np.ndarray]:
    """Per-volunteer answers. Carelessness up to 1 makes every answer, "star or artifact"
    included, common: each branch of the tree is taken by many volunteers."""
    rng = np.random.default_rng(14)
    walks = []
    for i in range(100):
        probs = synthetic.votes._question_probs(sample_truth(CLASSES[i % len(CLASSES)], rng))
        walks.append(synthetic.votes._walk_tree(probs, rng.uniform(0.0, 1.0, 40), rng))
    return walks


@pytest.mark.parametrize(("question", "sl", "parent"), TREE_ROWS)
def test_each_volunteer_answers_a_question_exactly_when_they_gave_its_parent_answer(
        volunteer_walks, question, sl, parent):
    for gave in volunteer_walks:
        answered = gave[:, sl].sum(axis=1)
        assert set(answered.tolist()) <= {0, 1}, question.key  # one answer per reached question
        reached = np.ones(len(gave), bool) if parent is None else gave[:, parent]
        np.testing.assert_array_equal(answered == 1, reached, err_msg=question.key)


def test_the_vote_module_names_no_question_key():
    # the branching must come from GZ2_TREE, not from questions named in the code
    source = inspect.getsource(synthetic.votes)
    named = [q.key for q in GZ2_TREE.questions if re.search(rf"""["']{q.key}["']""", source)]
    assert named == []


@pytest.mark.parametrize("cls", CLASSES)
def test_the_vote_model_has_one_distribution_per_tree_question(cls):
    probs = synthetic.votes._question_probs(sample_truth(cls, np.random.default_rng(0)))
    assert set(probs) == {q.slug for q in GZ2_TREE.questions}
    for q in GZ2_TREE.questions:
        assert probs[q.slug].shape == (len(q.answers),), q.key
        assert abs(probs[q.slug].sum() - 1.0) < 1e-12, q.key


def test_balanced_mix_is_exactly_balanced_and_labels_agree(tmp_path):
    n = 50
    t = render_survey(tmp_path, n, seed=21, size=48, mix="balanced", workers=2)
    truth = t.column("truth_class").to_pylist()
    assert Counter(truth) == {c: n // len(CLASSES) for c in CLASSES}
    agree = np.mean(np.array(truth) == np.array(t.column("label").to_pylist()))
    print(f"label/truth agreement on n={n} balanced: {agree:.2f}")
    assert agree >= 0.8


def test_gz2_mix_follows_its_proportions():
    classes = synthetic.truth._assign_classes(3000, seed=1, mix="gz2")
    counts = Counter(classes)
    for c, p in MIXES["gz2"].items():
        assert abs(counts[c] / 3000 - p) < 0.03, (c, counts[c])
    # an object's class does not depend on how many objects there are
    assert synthetic.truth._assign_classes(10, seed=1, mix="gz2") == classes[:10]
    assert max(counts, key=counts.get) == "ambiguous"


def test_progress_reports_up_to_n(tmp_path):
    seen: list[int] = []
    render_survey(tmp_path, 5, seed=2, size=32, workers=1, progress=seen.append)
    assert seen == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": 2.5}, "n must be an integer >= 1"),
        ({"size": 31}, "size must be an integer >= 32"),
        ({"mix": "sdss"}, "unknown mix 'sdss'; valid mixes: balanced, gz2"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"workers": 0}, "workers must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, message):
    args = {"n": 2, "seed": 1, "size": 64, "mix": "gz2"} | kwargs
    with pytest.raises(ValueError, match=message):
        render_survey(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()  # nothing written before validation


# ----------------------------------------------------------------------------------------------
# GalSim rendering of the light profiles


def _moments(img: np.ndarray) -> tuple[float, float]:
    """Apparent axis ratio and position angle (radians, x towards y) from second moments."""
    y, x = np.indices(img.shape, dtype=float)
    w = img / img.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    cxx, cyy, cxy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum(), (w * (x - mx) * (y - my)).sum()
    ev = np.linalg.eigvalsh([[cxx, cxy], [cxy, cyy]])
    return float(np.sqrt(ev[0] / ev[1])), float(0.5 * np.arctan2(2 * cxy, cxx - cyy))


def test_sersic_cusp_is_integrated_over_the_central_pixels():
    scene = synthetic.scene._Scene(128, 0.0)
    prof = synthetic.scene._sersic_profile(4.0, 4.0, 0.8, 0.3, flux=1000.0)
    # a profile centred exactly on a pixel centre: the worst case for point sampling
    x = y = 0.5 / 128
    sampled = scene.draw(prof, x, y)
    drawn = scene.draw(prof, x, y, centre=3)
    reference, sl = scene.stamp(prof, x, y, 3, sub=32)
    assert sampled.max() > 3 * reference.max()  # one sample at the cusp: several times too bright
    np.testing.assert_allclose(drawn[sl], reference, rtol=0.02)
    assert abs(drawn.sum() / 1000.0 - 1.0) < 0.03


@pytest.mark.parametrize("q", [0.3, 0.55, 0.85])
def test_inclined_disk_has_the_sampled_axis_ratio_and_angle(q):
    scene = synthetic.scene._Scene(256, 0.0)
    pa = 0.6
    img = scene.draw(synthetic.scene._inclined_disk_profile(12.0, q, pa, 1.0), 0.0, 0.0)
    q_seen, pa_seen = _moments(img)
    assert abs(q_seen - q) < 0.05, q_seen
    assert abs(pa_seen - pa) < 0.03, pa_seen
    # normalised like a flat exponential disk of central surface brightness 1 seen at q
    assert abs(img.sum() / (2 * np.pi * 12.0**2 * q) - 1.0) < 0.02


def test_edge_on_disks_are_thin_with_a_dust_lane():
    truth = next(t for t in (sample_truth("edge-on", np.random.default_rng(s)) for s in range(50))
                 if t["render"]["edge"]["dust"] is not None)
    truth["render"]["neighbours"] = []
    scene = synthetic.scene._Scene(212, truth["render"]["shift"])
    synthetic.render._draw_edge_on(scene, np.random.default_rng(0), truth["render"], truth["render"]["edge"])
    q_seen, _ = _moments(scene.target[2])
    assert q_seen < 0.3, q_seen
    # the lane: along the minor axis through the centre, light dips at the midplane in g
    e, c = truth["render"]["edge"], truth["render"]
    n = scene.n
    t = np.linspace(-3, 3, 61) * e["z0"] * n
    cx, cy = scene.pixel(*c["center"])
    along = 0.3 * e["h"] * n  # a little off the centre, clear of the bulge
    xs = cx - t * np.sin(c["pa"]) + along * np.cos(c["pa"])
    ys = cy + t * np.cos(c["pa"]) + along * np.sin(c["pa"])
    g = scipy.ndimage.map_coordinates(scene.target[0], [ys, xs], order=1)
    lane = int(np.argmin(np.abs(t - e["dust"]["offset"] * n)))
    assert g[lane] < 0.8 * g.max()


def test_render_object_is_deterministic_and_uses_the_image_stream_only():
    truth = sample_truth("spiral", np.random.default_rng(3))
    a = synthetic.render_object(truth, np.random.default_rng(9), 424)
    b = synthetic.render_object(truth, np.random.default_rng(9), 424)
    c = synthetic.render_object(truth, np.random.default_rng(10), 424)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (424, 424, 3) and a[1].shape == (424, 424)
