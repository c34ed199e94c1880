"""The CUDA path (AMP, channels_last, padded batches; ONNX Runtime's CUDA provider); skipped where no GPU is present."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_amp_predictions_agree_with_cpu(fcn_model):
    from geoseg.predict.engine import Predictor

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (5, 3, 256, 256), dtype=np.uint8)
    cpu = Predictor(fcn_model, device="cpu", threads=1).predict(x)
    gpu = Predictor(fcn_model, device="cuda", batch_size=4)
    assert gpu.amp and gpu.batch_size == 4
    out = gpu.predict(x)  # 5 tiles: one full batch, one padded
    assert out.shape == cpu.shape and out.dtype == np.float32
    assert (out.argmax(1) == cpu.argmax(1)).mean() > 0.99
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-3)


def test_run_on_cuda(tmp_path, fcn_model):
    from geoseg.config import RunConfig
    from geoseg.pipeline import run
    from tests.conftest import smooth_image, write_tif

    path = write_tif(tmp_path / "s.tif", smooth_image(700, 600))
    res = run(RunConfig(scene=path, model=fcn_model, outdir=tmp_path, device="cuda", tile=256, overlap=32))
    assert res.n_polygons > 0


def test_onnx_runtime_on_cuda_agrees_with_cpu(tmp_path, fcn_model):
    """The CUDA execution provider (onnxruntime-gpu) gives the CPU provider's classes."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu)")
    from geoseg.predict.onnx_engine import OnnxPredictor
    from geoseg.predict.onnx_export import export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(fcn_model, path)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (5, 3, 256, 256), dtype=np.uint8)
    cpu = OnnxPredictor(path, device="cpu").predict(x)
    gpu = OnnxPredictor(path, device="cuda", batch_size=4)
    assert gpu.device == "cuda:0" and gpu.session.get_providers()[0] in (
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
    )
    out = gpu.predict(x)
    assert (out.argmax(1) == cpu.argmax(1)).mean() > 0.999
