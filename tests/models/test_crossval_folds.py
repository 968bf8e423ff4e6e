"""A finished fold kept on disk reads back as it was, and only under the protocol it was made under."""

from __future__ import annotations

import numpy as np
import pytest

from models.provenance import code_commit

from models.crossval import HeldOut, fold_commit, fold_path, load_fold, save_fold

PROTOCOL = {"k": 2, "catalogs": {"gz2": "f00"}, "models": ["classifier"], "config": {"a": (1, 2)}, "settings": {"b": 1}}


def _held(fold: int) -> HeldOut:
    return HeldOut("gz2", fold, ["a", "b"], ["spiral", None], ["spiral", "elliptical"],
                   probs=np.array([[0.25, 0.75], [0.5, 0.5]], np.float32), ood_flag=np.array([True, False]),
                   votes_true=np.array([[np.nan, 0.5], [0.1, np.nan]]), captions=["x", None], failures=1,
                   knn_labels=[["spiral"], ["elliptical"]])


def test_a_kept_fold_reads_back_as_it_was(tmp_path):
    save_fold(tmp_path, 1, PROTOCOL, [_held(1)])
    (back,) = load_fold(tmp_path, 1, PROTOCOL)
    want = _held(1)
    for name in ("catalog", "fold", "object_ids", "labels", "class_names", "captions", "failures", "knn_labels"):
        assert getattr(back, name) == getattr(want, name), name
    assert back.probs.dtype == np.float32 and np.array_equal(back.probs, want.probs)
    assert back.ood_flag.dtype == bool and back.ood_flag.tolist() == [True, False]
    np.testing.assert_array_equal(back.votes_true, want.votes_true)  # NaN where there were none
    assert back.votes_pred is None
    assert fold_commit(tmp_path, 1) == code_commit() and fold_commit(tmp_path, 0) is None


@pytest.mark.parametrize("change", [{"k": 3}, {"catalogs": {"gz2": "f01"}}, {"models": ["regressor"]},
                                    {"settings": {"b": 2}}])
def test_a_fold_made_under_another_protocol_or_missing_is_not_used(tmp_path, change):
    save_fold(tmp_path, 0, PROTOCOL, [_held(0)])
    assert load_fold(tmp_path, 0, {**PROTOCOL, **change}) is None
    assert load_fold(tmp_path, 1, PROTOCOL) is None
    assert fold_path(tmp_path, 0).is_file()


def test_a_fold_kept_before_a_config_field_existed_counts_as_made_with_its_default(tmp_path):
    """Fields added to the config since a fold was kept read as their default (the behaviour
    before they existed); set to anything else, the fold is trained again."""
    from dataclasses import asdict

    from models.config import ModelConfig, TrainSettings

    now = {**PROTOCOL, "config": ModelConfig().to_dict(), "settings": asdict(TrainSettings())}
    earlier = {**now, "config": {**now["config"], "backbone": {k: v for k, v in now["config"]["backbone"].items()
                                                               if k != "depths"}}}
    save_fold(tmp_path, 0, earlier, [_held(0)])
    assert load_fold(tmp_path, 0, now) is not None
    lean = {**now, "config": {**now["config"], "backbone": {**now["config"]["backbone"], "depths": (1, 2, 2, 2)}}}
    assert load_fold(tmp_path, 0, lean) is None
