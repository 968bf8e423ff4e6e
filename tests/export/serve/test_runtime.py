"""Opening a bundle: answers equal Keras, provider choice on this machine, no error logs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from catalogs.tokenizer import Tokenizer
from export.serve.errors import DeviceUnavailableError
from export.serve.providers import choose_providers, cuda_unavailable_reason
from export.serve.runtime import open_bundle
from models.artifacts import load_trained
from models.captioner import captioner_from_train, greedy_decode
from tests.conftest import REPO
from tests.export.tiny_models import CFG, structured_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_answers_equal_the_keras_models(tiny_bundle, tiny_models):
    bundle = open_bundle(tiny_bundle, intra_op_threads=1, expect_image_size=32,
                         require=("classifier", "regressor", "captioner"))
    x = structured_images(8, seed=9)
    classifier, _ = load_trained(tiny_models, "classifier")
    out = bundle.infer(x)
    np.testing.assert_allclose(out["probs"], classifier(x, training=False).numpy(), atol=1e-4)
    regressor, _ = load_trained(tiny_models, "regressor")
    np.testing.assert_allclose(out["votes"], regressor(x, training=False).numpy(), atol=1e-3)
    captioner, sidecar = load_trained(tiny_models, "captioner")
    tokenizer = Tokenizer.from_dict(sidecar["tokenizer"])
    assert bundle.captions(x) == greedy_decode(captioner_from_train(captioner), x, tokenizer, sidecar["max_len"])
    assert bundle.image == CFG.image and bundle.has == {"classifier", "regressor", "captioner"}
    assert bundle.class_names == ["elliptical", "spiral", "edge_on"] and len(bundle.answer_names) == 37
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 32, 32, 3\)"):
        bundle.infer(np.zeros((2, 64, 64, 3), np.float32))


def test_provider_on_this_machine(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    if cuda_unavailable_reason() is None:
        assert bundle.provider == "CUDAExecutionProvider"
        return
    assert bundle.provider == "CPUExecutionProvider" and bundle.cuda_note == cuda_unavailable_reason()
    with pytest.raises(DeviceUnavailableError, match="device='cuda' asked for, but CUDA cannot run here"):
        open_bundle(tiny_bundle, device="cuda")
    assert open_bundle(tiny_bundle, device="cpu").provider == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="device must be one of"):
        choose_providers("gpu")
    with pytest.raises(ValueError, match="intra_op_threads"):
        open_bundle(tiny_bundle, intra_op_threads=0)


def test_opening_and_running_logs_no_error_and_needs_no_tensorflow(tiny_bundle):
    """In a fresh process, as the annotation engine would: onnxruntime writes its own log lines
    to the process's stderr, so they are only visible there."""
    script = (
        "import sys, numpy as np\n"
        "from export.serve.runtime import open_bundle\n"
        f"b = open_bundle({str(tiny_bundle)!r})\n"
        "x = np.zeros((2, 32, 32, 3), np.float32)\n"
        "b.infer(x); b.captions(x)\n"
        "print(b.provider, 'tensorflow' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1] == "False"
    if proc.stdout.split()[0] == "CPUExecutionProvider":
        assert "[E:" not in proc.stderr and "ERROR" not in proc.stderr.upper(), proc.stderr
        assert "[W:" not in proc.stderr, proc.stderr
