"""ONNX graphs: export with metadata, ONNX Runtime runs without torch, int8 calibration, engine choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.errors import ConfigError, QuantizationError
from geoseg.predict import runtime
from tests.conftest import assert_same_outputs, invoke, smooth_image, write_tif


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An untrained FCN-4s / ResNet-18 checkpoint with a 0.25 m GSD and its fp32 ONNX export."""
    from geoseg.predict.checkpoint import init_checkpoint
    from geoseg.predict.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("onnx")
    pt = d / "fcn4s.pt"
    init_checkpoint(pt, arch="fcn4s", encoder="resnet18", seed=2, tile_size=256, gsd=0.25)
    onnx_path = d / "fcn4s.onnx"
    export_onnx(pt, onnx_path)
    return pt, onnx_path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tif(tmp_path_factory.mktemp("scene") / "scene.tif", smooth_image(700, 600, seed=4))


def test_the_graph_carries_geoseg_and_qgis_plugin_metadata(exported):
    from geoseg.predict.checkpoint import read_spec as read_checkpoint_spec
    from geoseg.predict.onnx_engine import read_metadata

    pt, path = exported
    meta = read_metadata(path)
    spec = read_checkpoint_spec(pt)
    assert runtime.read_spec(path) == spec  # the whole ModelSpec round-trips
    # the keys Deepness and GeoDeep read
    assert meta["model_type"] == "Segmentor"
    assert json.loads(meta["class_names"]) == {str(c.id): c.name for c in spec.classes}
    assert float(meta["resolution"]) == pytest.approx(25.0)  # centimetres per pixel
    assert meta["tiles_size"] == "256" and 0 < int(meta["tiles_overlap"]) < 50
    np.testing.assert_allclose(json.loads(meta["standardization_mean"]), np.array(spec.mean) / 255)
    np.testing.assert_allclose(json.loads(meta["standardization_std"]), np.array(spec.std) / 255)
    assert meta["geoseg_precision"] == "fp32" and meta["geoseg_multiple"] == "16"


def test_onnxruntime_alone_reproduces_the_checkpoint_from_the_metadata(exported, tmp_path):
    """A client with only onnxruntime and the file's metadata (as QGIS plugins have) gets torch fp32's classes."""
    from geoseg.predict.engine import Predictor

    pt, path = exported
    tile = smooth_image(256, 384, seed=9)
    np.save(tmp_path / "tile.npy", tile)
    expected = Predictor(pt, device="cpu", precision="fp32", threads=1).predict(tile[None])[0].argmax(0)
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np, onnxruntime as ort
        sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
        x = np.load(sys.argv[2]).astype(np.float32)[None] / 255  # how Deepness feeds 8-bit imagery
        mean = np.array(json.loads(meta["standardization_mean"]), np.float32).reshape(1, -1, 1, 1)
        std = np.array(json.loads(meta["standardization_std"]), np.float32).reshape(1, -1, 1, 1)
        (probs,) = sess.run(None, {sess.get_inputs()[0].name: (x - mean) / std})
        np.save(sys.argv[3], probs[0].argmax(0).astype(np.uint8))
        print(sorted(sys.modules.keys() & {"torch", "geoseg"}))
        """
    )
    alone = tmp_path / "alone"
    alone.mkdir()
    copy = alone / "model.onnx"  # nothing beside it
    copy.write_bytes(path.read_bytes())
    out = subprocess.run(
        [sys.executable, "-c", script, str(copy), str(tmp_path / "tile.npy"), str(tmp_path / "classes.npy")],
        capture_output=True,
        text=True,
        check=True,
        cwd=alone,
    )
    assert out.stdout.strip() == "[]"  # neither torch nor geoseg was imported
    got = np.load(tmp_path / "classes.npy")
    assert (got == expected).mean() >= 0.999, (got == expected).mean()


def test_onnx_run_equals_torch_fp32_and_is_chunk_invariant(exported, scene, tmp_path):
    pt, path = exported
    common = ("--tile", 256, "--overlap", 32, "--min-area", 0, "--simplify", 0, "-q")
    code, out = invoke("run", scene, "-m", path, "-o", tmp_path / "a", *common)
    assert code == 0, out
    code, out = invoke("run", scene, "-m", path, "-o", tmp_path / "b", "--chunk", 160, *common)
    assert code == 0, out
    assert_same_outputs(tmp_path / "a", tmp_path / "b")  # byte-identical whatever the block size
    code, out = invoke(
        "run", scene, "-m", pt, "-o", tmp_path / "t", "--engine", "torch", "--precision", "fp32", *common
    )
    assert code == 0, out
    with (
        rasterio.open(tmp_path / "a" / "scene.classes.tif") as a,
        rasterio.open(tmp_path / "t" / "scene.classes.tif") as t,
    ):
        agree = (a.read(1) == t.read(1)).mean()
    assert agree >= 0.999, agree
    report = json.loads((tmp_path / "a" / "scene.run.json").read_text())
    assert report["model"]["engine"] == "onnx" and report["grid"]["precision"] == "fp32"


def test_a_checkpoint_runs_on_onnx_through_a_cached_export(exported, scene, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSEG_HOME", str(tmp_path / "home"))
    pt, path = exported
    common = ("--tile", 256, "--overlap", 32, "-q")
    code, out = invoke("run", scene, "-m", pt, "-o", tmp_path / "a", "--engine", "onnx", *common)
    assert code == 0, out
    graphs = list((tmp_path / "home" / "models" / "engines").glob("*.fp32.onnx"))
    assert len(graphs) == 1
    report = json.loads((tmp_path / "a" / "scene.run.json").read_text())
    assert report["model"]["graph"] == str(graphs[0]) and report["model"]["path"] == str(pt.resolve())
    code, out = invoke("run", scene, "-m", path, "-o", tmp_path / "b", *common)
    assert code == 0, out
    assert_same_outputs(tmp_path / "a", tmp_path / "b")  # the cached graph is the same as an explicit export


def test_workers_running_an_onnx_model_never_import_torch(exported, scene, tmp_path):
    """Neither the main process of a threaded run nor a cluster's worker processes load torch."""
    _, path = exported
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from distributed import Client, LocalCluster
        from geoseg.config import RunConfig
        from geoseg.pipeline import run

        scene, model, out = sys.argv[1:4]
        run(RunConfig(scene=scene, model=model, outdir=Path(out) / "threads", tile=256))
        print("main", "torch" in sys.modules)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            address = cluster.scheduler_address
            run(RunConfig(scene=scene, model=model, outdir=Path(out) / "cluster", tile=256, scheduler=address))
            with Client(cluster) as client:
                seen = client.run(lambda: ("torch" in sys.modules, "onnxruntime" in sys.modules))
        print("workers", sorted(set(seen.values())))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(scene), str(path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "main False" in out.stdout, out.stdout
    assert "workers [(False, True)]" in out.stdout, out.stdout  # the worker ran the graph, without torch
    a = rasterio.open(tmp_path / "threads" / "scene.classes.tif").read(1)
    b = rasterio.open(tmp_path / "cluster" / "scene.classes.tif").read(1)
    assert np.array_equal(a, b)


def test_an_int8_graph_below_the_agreement_is_refused_and_not_written(exported, scene, tmp_path):
    """An untrained model's near-tied scores do not survive int8: refused, nothing at the output, unless forced."""
    from geoseg.predict.onnx_int8 import quantize_int8

    pt, _ = exported
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(QuantizationError, match=r"held-out pixels, below --min-agreement 99\.900%"):
        quantize_int8(pt, out, calibrate=[str(scene)], tiles=8, min_agreement=0.999)
    assert not out.exists() and not list(tmp_path.glob(".*part*"))
    cal = quantize_int8(pt, out, calibrate=[str(scene)], tiles=8, min_agreement=0.999, force=True)
    # 2 x 2 tiles of 256 px in a 700 x 600 scene: alternately calibrate and check
    assert out.exists() and cal.agreement < 0.999 and (cal.calibration_tiles, cal.heldout_tiles) == (2, 2)
    # kept in float: FCN-4s's three class-score convolutions and the softmax
    assert len(cal.kept_float) == 4 and "softmax" in cal.kept_float[-1].lower()
    from geoseg.predict.onnx_engine import read_metadata

    meta = read_metadata(out)
    assert meta["geoseg_precision"] == "int8"
    assert json.loads(meta["geoseg_calibration"])["agreement"] == pytest.approx(cal.agreement)


def test_engine_choice(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSEG_HOME", str(tmp_path / "home"))
    pt, path = exported
    choose = runtime.choose_engine
    assert choose(path, engine="auto", device="cpu", precision="auto").engine == "onnx"
    with pytest.raises(ConfigError, match="ONNX Runtime only"):
        choose(path, engine="torch", device="cpu", precision="auto")
    with pytest.raises(ConfigError, match="fp32 graph and cannot run at --precision int8"):
        choose(path, engine="auto", device="cpu", precision="int8")
    with pytest.raises(ConfigError, match=r"geoseg model export .* --int8 --calibrate"):
        choose(pt, engine="auto", device="cpu", precision="int8")
    # a calibrated int8 graph in the cache: the CPU default where torch has no AMX to run bf16 on
    from geoseg._files import sha256_file

    int8 = runtime.cached_graph(sha256_file(pt), "int8")
    int8.parent.mkdir(parents=True)
    int8.write_bytes(path.read_bytes())
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16", "avx512_vnni"}))
    c = choose(pt, engine="auto", device="cpu", precision="auto")
    assert (c.engine, c.path, c.precision) == ("onnx", int8, "int8")
    assert choose(pt, engine="auto", device="cpu", precision="bf16").engine == "torch"
    assert choose(pt, engine="torch", device="cpu", precision="auto").engine == "torch"
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16", "amx_tile"}))
    assert choose(pt, engine="auto", device="cpu", precision="auto").engine == "torch"
    assert choose(pt, engine="onnx", device="cpu", precision="auto").path == int8
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert choose(pt, engine="auto", device="auto", precision="auto", remote=True).engine == "torch"


# onnxruntime warns that the provider is missing, then runs on the CPU: the case under test
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_a_cuda_provider_that_does_not_start_is_not_taken_for_the_gpu(exported, monkeypatch, caplog):
    """onnxruntime-gpu without its CUDA libraries quietly runs on the CPU: --device cuda must fail instead."""
    import onnxruntime

    from geoseg.predict.onnx_engine import OnnxPredictor

    _, path = exported
    listed = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # as onnxruntime-gpu lists them, loadable or not
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    with pytest.raises(ConfigError, match=r"--device cuda: ONNX Runtime .* could not start its CUDA provider"):
        OnnxPredictor(path, device="cuda")
    with pytest.raises(ConfigError, match="--device cuda:0: "):
        OnnxPredictor(path, device="cuda:0")
    # auto only prefers the GPU: it carries on with the CPU's settings, and says so
    monkeypatch.setattr(runtime, "visible_gpus", lambda: 1)
    with caplog.at_level("WARNING", logger="geoseg.predict.onnx_engine"):
        pred = OnnxPredictor(path, device="auto")
    assert (pred.device, pred.on_gpu, pred.batch_size) == ("cpu", False, 1)
    assert "could not start its CUDA provider" in caplog.text
    assert pred.predict(smooth_image(64, 64, seed=1)[None]).shape == (1, 6, 64, 64)


def test_command_line_errors_are_one_line(exported, scene, tmp_path):
    pt, path = exported
    code, out = invoke("run", scene, "-m", path, "-o", tmp_path, "--engine", "torch")
    assert code == 1 and "runs with ONNX Runtime only" in out and "Traceback" not in out
    code, out = invoke("model", "export", pt, "--int8", "-o", tmp_path / "x.onnx")
    assert code == 2 and "--int8 needs real imagery to calibrate on" in out
    code, out = invoke("model", "export", pt, "--int8", "--calibrate", tmp_path / "nothing", "-o", tmp_path / "x.onnx")
    assert code == 1 and "no such file or folder" in out and not (tmp_path / "x.onnx").exists()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    code, out = invoke("run", scene, "-m", bad, "-o", tmp_path)
    assert code == 1 and "not an ONNX model onnxruntime can read" in out and "Traceback" not in out


def test_an_onnx_model_installs_and_runs_by_name(exported, scene, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSEG_HOME", str(tmp_path / "home"))
    _, path = exported
    code, out = invoke("model", "install", path, "--name", "fcn-onnx")
    assert code == 0, out
    assert (tmp_path / "home" / "models" / "fcn-onnx.onnx").is_file()
    code, out = invoke("run", scene, "-m", "fcn-onnx", "-o", tmp_path / "out", "--tile", 256, "-q")
    assert code == 0, out
    assert json.loads((tmp_path / "out" / "scene.run.json").read_text())["model"]["engine"] == "onnx"
