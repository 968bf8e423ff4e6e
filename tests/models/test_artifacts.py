"""Loading trained models never runs code from the file: a ``.keras`` file carrying a Lambda
(arbitrary Python, marshalled into the archive) is refused by ``safe_mode=True``."""

from __future__ import annotations

import json

import keras
import pytest

from models.artifacts import load_trained

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_a_model_file_carrying_code_is_refused(tmp_path):
    inputs = keras.Input((4,), name="image")
    outputs = keras.layers.Lambda(lambda x: x * 2.0, name="code")(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "classifier.keras")
    (tmp_path / "classifier.json").write_text(json.dumps({"kind": "classifier"}))
    # Keras's own refusal (unsafe mode would deserialise the lambda's bytecode instead).
    with pytest.raises(ValueError, match="safe_mode"):
        load_trained(tmp_path, "classifier")
