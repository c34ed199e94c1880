"""Training, evaluation and the demo: models that know land cover, measured.

The real-data test trains on the labelled ISPRS Potsdam crop in ``../shared``;
the others use geoseg's synthetic scenes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.config import RunConfig
from geoseg.demo import DemoSettings, demo
from geoseg.pipeline import run
from geoseg.synthetic import SceneSpec, write_scene
from geoseg.training.datasets import Sample, read_image, read_labels
from geoseg.training.train import TrainConfig, class_weights, train
from tests.conftest import invoke

LABELED = Path(__file__).resolve().parents[3] / "shared" / "data" / "labeled"
POTSDAM = LABELED / "isprs_potsdam"


@pytest.mark.skipif(not POTSDAM.is_dir(), reason=f"labelled ISPRS crops not found at {POTSDAM}")
def test_training_on_the_real_potsdam_crop_fits_it_and_evaluate_scores_it(tmp_path):
    """Reading, codec, augmentation, loss and checkpointing on real data: training mIoU >= 0.90 in a few minutes."""
    img, ann = POTSDAM / "potsdam_2_10_0_0_512_512_img.png", POTSDAM / "potsdam_2_10_0_0_512_512_ann.png"
    config = tmp_path / "train.yaml"
    config.write_text(
        "# mmseg-style index labels: 0 = eroded boundary (ignore), 1..6 = impervious..clutter\n"
        f"images: [{img}]\nlabels: [{ann}]\nlabel_kind: index\nindex_offset: 1\nignore_value: 0\n"
        "arch: unet\nencoder: resnet18\ntile: 256\nbatch: 8\nlr: 0.002\nepochs: 9\n"
    )
    model = tmp_path / "potsdam.pt"
    code, out = invoke("train", config, "--steps-per-epoch", 20, "-o", model, "-q")  # fixed steps: the same on any load
    assert code == 0, out
    from geoseg.predict.checkpoint import read_spec

    spec = read_spec(model)
    assert spec.extra["trained"] and spec.extra["val_miou"] >= 0.90, spec.extra.get("history")
    assert spec.bands == ("red", "green", "blue") and spec.tile_size == 256 and spec.pixel_dtype == "uint8"
    assert 60 < spec.mean[0] < 200 and spec.std[0] > 5  # statistics of the crop, in 8-bit units
    assert (model.parent / "potsdam.pt.state").exists()  # resumable

    # the same model through the full pipeline (a PNG without georeferencing runs on a stand-in grid)
    code, out = invoke(
        "evaluate", "--model", model, "--images", img, "--labels", ann, "--label-kind", "index",
        "--index-offset", 1, "--ignore-value", 0, "--overlap", 64, "-o", tmp_path / "eval",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert set(report["protocols"]) == {
        "full, all classes",
        "full, no clutter",
        "eroded, all classes",
        "eroded, no clutter",
    }
    assert report["protocols"]["full, all classes"]["miou"] >= 0.85
    assert "mIoU" in out and (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    assert not (tmp_path / "eval" / ".stand-in").exists()


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOSEG_HOME", str(home))
    settings = DemoSettings(
        train_scenes=6,
        scene_size=512,
        test_size=768,
        arch="fcn4s",
        encoder="resnet18",
        tile=256,
        batch=8,
        epochs=16,
        steps_per_epoch=30,
        lr=4e-3,
    )
    try:
        yield demo(tmp_path_factory.mktemp("demo"), settings)
    finally:
        mp.undo()


def test_tiny_demo_maps_and_scores_a_held_out_scene(tiny_demo):
    r = tiny_demo
    # a real accuracy floor on a scene the model never saw (chance level is about 1/6 per class)
    assert r.overall_accuracy >= 0.75 and r.miou >= 0.45, (r.overall_accuracy, r.miou, r.class_iou)
    assert {"classes", "landcover", "report", "preview"} <= set(r.outputs)
    assert all(Path(p).exists() for p in r.outputs.values())
    assert (r.outdir / "evaluation" / "evaluation.json").exists()
    assert r.installed == "demo" and r.default  # nothing was installed before: it became the default
    report = json.loads(Path(r.outputs["report"]).read_text())
    assert report["model"]["sha256"]


def test_the_demo_model_gets_a_calibrated_int8_graph_that_runs(tiny_demo, tmp_path):
    """int8 calibrated on the demo's training and validation scenes maps its held-out scene like torch fp32."""
    from geoseg._files import sha256_file
    from geoseg.predict import runtime

    r = tiny_demo  # its GEOSEG_HOME is set while the module's tests run
    cached = runtime.cached_graph(sha256_file(r.checkpoint), "int8")
    assert cached.is_file() == (r.int8_agreement is not None)  # written exactly when it reached 99.5 %
    graph = cached
    if r.int8_agreement is None:  # this briefly trained model fell short: check the forced graph all the same
        from geoseg.predict.onnx_int8 import quantize_int8

        graph = tmp_path / "forced.int8.onnx"
        quantize_int8(r.checkpoint, graph, calibrate=[str(r.outdir / "data" / "train")], tiles=16, force=True)
    print(f"demo int8 held-out agreement: {r.int8_agreement}")
    runs = {}
    for name, model, extra in (
        ("int8", graph, ()),
        ("fp32", r.checkpoint, ("--engine", "torch", "--precision", "fp32")),
    ):
        code, out = invoke("run", r.scene, "-m", model, "-o", tmp_path / name, "-q", *extra)
        assert code == 0, out
        with rasterio.open(tmp_path / name / "scene.classes.tif") as ds:
            runs[name] = ds.read(1)
    report = json.loads((tmp_path / "int8" / "scene.run.json").read_text())
    assert (report["model"]["engine"], report["grid"]["precision"]) == ("onnx", "int8")
    agreement = (runs["int8"] == runs["fp32"]).mean()
    assert agreement >= 0.98, agreement


def test_tiled_prediction_agrees_with_one_whole_image_pass(tiny_demo, tmp_path):
    """No seams: tile 256 / overlap 64 agrees with a single forward pass over the whole 1024 x 1024 scene."""
    agreement = seam_agreement(tiny_demo.checkpoint, tmp_path)
    print(f"seam agreement: {agreement:.4%}")
    with rasterio.open(tmp_path / "seams.classes.tif") as ds:
        assert len(np.unique(ds.read(1))) >= 3  # a trained model, not a constant map
    # A briefly trained model: 99.43-99.61 % in runs stopped at a time budget; FCN-8s trained alike reached ~99.0 %.
    # The demo's model meets the 99.5 % target: see the slow test below.
    assert agreement >= 0.993, agreement


def seam_agreement(checkpoint: Path, workdir: Path) -> float:
    """Tile 256 / overlap 64 against one whole-image forward pass over a seeded 1024 x 1024 synthetic scene."""
    from geoseg.predict.window import predict_window

    scene = workdir / "seams.tif"
    write_scene(SceneSpec(width=1024, height=1024, pixel_size=0.25, seed=77), scene)
    res = run(RunConfig(scene=scene, model=checkpoint, outdir=workdir, tile=256, overlap=64, min_area=0, simplify=0))
    with rasterio.open(res.outputs["classes"]) as ds:
        tiled = ds.read(1)
    image = read_image(Sample(scene, scene, "index", "s")).astype(np.float32)
    return float((tiled == predict_window(checkpoint, image, pad=32)).mean())


@pytest.mark.slow
def test_the_demo_with_its_defaults_meets_the_targets(tmp_path, monkeypatch):
    """The real demo (about 7 minutes): held-out mIoU >= 0.90 (ISPRS) and >= 0.80 (every pixel), seams >= 99.5 %."""
    monkeypatch.setenv("GEOSEG_HOME", str(tmp_path / "home"))
    r = demo(tmp_path / "demo")
    agreement = seam_agreement(r.checkpoint, tmp_path)
    print(f"demo: mIoU {r.miou:.4f} (all pixels {r.miou_all_pixels:.4f}), {r.seconds:.0f} s; seams {agreement:.4%}")
    assert r.miou >= 0.90 and r.miou_all_pixels >= 0.80, (r.miou, r.miou_all_pixels, r.class_iou)
    assert agreement >= 0.995, agreement


def test_training_a_fixed_number_of_seeded_steps_is_reproducible(tmp_path):
    """The same settings give the same weights: what makes the demo's scores the same on every run."""
    import torch

    img, lab = tmp_path / "img.tif", tmp_path / "lab.tif"
    write_scene(SceneSpec(width=256, height=256, pixel_size=0.25, seed=5), img, lab)
    kw = dict(
        images=[img], labels=[lab], label_kind="index", arch="fcn4s", encoder="resnet18", tile=64, batch=2,
        epochs=2, steps_per_epoch=3, val_windows=2, seed=7,
    )  # fmt: skip
    states = []
    for run_dir in ("a", "b"):
        out = train(TrainConfig(output=tmp_path / run_dir / "m.pt", **kw)).checkpoint
        states.append(torch.load(out, weights_only=True)["state_dict"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    other = train(TrainConfig(output=tmp_path / "c" / "m.pt", **(kw | {"seed": 8}))).checkpoint
    changed = torch.load(other, weights_only=True)["state_dict"]
    assert not all(torch.equal(states[0][k], changed[k]) for k in states[0])  # the seed matters


def test_resume_continues_the_epochs(tmp_path):
    img, lab = tmp_path / "img.tif", tmp_path / "lab.tif"
    write_scene(SceneSpec(width=256, height=256, pixel_size=0.25, seed=3), img, lab)
    kw = dict(
        images=[img], labels=[lab], label_kind="index", arch="fcn", encoder="resnet18", tile=64, batch=2,
        steps_per_epoch=2, val_windows=2, output=tmp_path / "m.pt",
    )  # fmt: skip
    first = train(TrainConfig(epochs=1, **kw))
    assert first.epochs_run == 1 and [h["epoch"] for h in first.history] == [1]
    more = train(TrainConfig(epochs=3, resume=True, **kw))
    assert [h["epoch"] for h in more.history] == [1, 2, 3]  # picks up at epoch 2, keeps the history


def test_bad_training_settings_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: synthetic:/tmp/x:2\nlearning_rate: 0.1\n")
    code, out = invoke("train", bad)
    assert code == 1 and "learning_rate" in out and "Traceback" not in out
    code, out = invoke("train", "--dataset", "synthetic:/tmp/x:2", "--tile", 100)
    assert code == 1 and "multiple of 32" in out
    code, out = invoke("train")
    assert code == 1 and "no training data" in out
    code, out = invoke("evaluate", "--model", tmp_path / "none.pt")
    assert code == 1 and "--dataset" in out


def test_class_weights_balance_rare_classes():
    w = class_weights(np.array([6000, 3000, 500, 0, 100, 400]))
    assert w[3] == 1.0  # absent class: neutral
    assert w[4] > w[2] > w[0] and max(w) <= 5.0 and min(w) >= 0.2


def test_labels_read_back_through_samples(tmp_path):
    img, lab = tmp_path / "i.tif", tmp_path / "l.tif"
    write_scene(SceneSpec(width=128, height=96, pixel_size=0.25, seed=1), img, lab)
    with rasterio.open(lab) as ds:
        truth = ds.read(1)
    np.testing.assert_array_equal(read_labels(Sample(img, lab, "index", "x", ignore_value=255)), truth)


@pytest.mark.parametrize("arch", ["unet", "fpn", "deeplabv3plus", "fcn", "fcn4s"])
def test_every_architecture_trains_and_runs(arch, tmp_path):
    img, lab = tmp_path / "img.tif", tmp_path / "lab.tif"
    write_scene(SceneSpec(width=192, height=160, pixel_size=0.25, seed=4), img, lab)
    out = tmp_path / f"{arch}.pt"
    result = train(
        TrainConfig(
            images=[img],
            labels=[lab],
            label_kind="index",
            arch=arch,
            encoder="resnet18",
            tile=64,
            batch=2,
            epochs=1,
            steps_per_epoch=2,
            val_windows=2,
            output=out,
        )
    )
    assert result.best_epoch == 1 and out.exists()
    res = run(RunConfig(scene=img, model=out, outdir=tmp_path / "map", tile=64, overlap=16, min_area=0, simplify=0))
    with rasterio.open(res.outputs["classes"]) as ds:
        assert ds.read(1).max() < 6  # every pixel got a class from the trained checkpoint


@pytest.mark.skipif(not POTSDAM.is_dir(), reason=f"labelled ISPRS crops not found at {POTSDAM}")
def test_mmseg_layout_validates_on_its_val_folders(tmp_path, caplog):
    """img_dir/{train,val} + ann_dir/{train,val}: the best checkpoint is chosen on val, not on the training images."""
    layout = {
        "train": POTSDAM / "potsdam_2_10_0_0_512_512",
        "val": LABELED / "isprs_vaihingen" / "vaihingen_area1_0_0_512_512",
    }
    for split, stem in layout.items():
        for side, suffix in (("img_dir", "_img.png"), ("ann_dir", "_ann.png")):
            (tmp_path / side / split).mkdir(parents=True)
            (tmp_path / side / split / f"{stem.name}.png").symlink_to(f"{stem}{suffix}")
    flags = (
        "--images", tmp_path / "img_dir" / "train", "--labels", tmp_path / "ann_dir" / "train",
        "--arch", "fcn", "--encoder", "resnet18", "--tile", 64, "--batch", 2, "--epochs", 1, "--steps-per-epoch", 1,
        "--val-windows", 2,
    )  # fmt: skip
    mmseg = ("--label-kind", "index", "--index-offset", 1, "--ignore-value", 0)
    val = ("--val-images", tmp_path / "img_dir" / "val", "--val-labels", tmp_path / "ann_dir" / "val")
    # --label-kind auto would read mmseg's 0 = ignore, 1..6 as class ids 0..5: refused, naming the flags
    code, out = invoke("train", *flags, *val, "-o", tmp_path / "auto.pt", "-q")
    assert code == 1 and "--index-offset 1 --ignore-value 0" in out and "Traceback" not in out
    model = tmp_path / "m.pt"
    code, out = invoke("train", *flags, *mmseg, *val, "-o", model, "-q")
    assert code == 0, out
    from geoseg.predict.checkpoint import read_spec

    extra = read_spec(model).extra
    assert extra["training"]["samples"] == ["potsdam_2_10_0_0_512_512"]
    assert extra["training"]["validation"] == {
        "source": "the validation folders",
        "samples": ["vaihingen_area1_0_0_512_512"],
    }
    assert "val_miou" in extra["history"][0]
    # without validation data the run says that it selects on the training images
    with caplog.at_level("WARNING", logger="geoseg.training.train"):
        cfg = TrainConfig(
            images=[tmp_path / "img_dir" / "train"], labels=[tmp_path / "ann_dir" / "train"], label_kind="index",
            index_offset=1, ignore_value=0, arch="fcn", encoder="resnet18", tile=64, batch=2, epochs=1,
            steps_per_epoch=1, val_windows=2, output=tmp_path / "n.pt",
        )  # fmt: skip
        assert train(cfg).best_epoch == 1
    assert "validating on the training images" in caplog.text and "--val-images" in caplog.text
    code, out = invoke("train", *flags, *mmseg, "--val-images", tmp_path / "img_dir" / "val", "-o", tmp_path / "x.pt")
    assert code == 1 and "give both val_images and val_labels" in out
    code, out = invoke("train", *flags, *mmseg, *val, "--val", "none", "-o", tmp_path / "x.pt")
    assert code == 1 and "not both" in out
