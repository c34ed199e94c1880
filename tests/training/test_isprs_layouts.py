"""ISPRS Potsdam and Vaihingen as the official archives unzip: finding files, dataset strings, band meaning, references.

The trees are built here with the official file names and tiny tiles (64 px):
``5_Labels_all.zip`` and the Vaihingen ``..._ground_truth_COMPLETE.zip`` /
``..._ground_truth_eroded_COMPLETE.zip`` unpack *flat* (their files at the
archive root), the image archives into folders named after them (sometimes
twice). Training runs are one step of a ResNet-18 FCN: they check what was
read and reported, not accuracy.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from geoseg.predict.checkpoint import read_spec
from geoseg.training.datasets import (
    DatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    Sample,
    match_bands,
    parse_dataset,
    potsdam,
    potsdam_bands_for,
    read_image,
    read_labels,
    vaihingen,
)
from geoseg.training.evaluate import default_overlap, evaluate
from geoseg.training.train import TrainConfig, train
from tests.conftest import invoke, write_tif
from tests.training.test_datasets import SIZE, _eroded, _ids, _tile_seed, _write_rgb_label

TRAIN_ARGS = (
    "--arch", "fcn", "--encoder", "resnet18", "--tile", 64, "--batch", 2, "--epochs", 1,
    "--steps-per-epoch", 1, "--val-windows", 2, "--no-class-balance",
)  # fmt: skip


def _rgbir(tile: str) -> np.ndarray:
    """Band k (1..4: R, G, B, IR) holds 10 * k + the tile's seed mod 7, so a band selection shows in the pixels."""
    s = _tile_seed(tile)
    noise = np.random.default_rng(s).integers(0, 5, (SIZE, SIZE))
    return np.stack([10 * k + s % 7 + noise for k in (1, 2, 3, 4)]).astype(np.uint8)


def make_potsdam_as_shipped(root: Path, tiles: tuple[str, ...], *, eroded: tuple[str, ...] = ()) -> Path:
    """Potsdam as unzipped: 4_Ortho_RGBIR.zip into its folder (nested twice), 5_Labels_all.zip and
    5_Labels_all_noBoundary.zip flat into the root (the latter only for `eroded` tiles), the archives kept."""
    images = root / "4_Ortho_RGBIR" / "4_Ortho_RGBIR"
    images.mkdir(parents=True)
    for tile in tiles:
        # official RGBIR tiles are not RGBA: the fourth band is data (MINISBLACK keeps GDAL from calling it alpha)
        write_tif(images / f"top_potsdam_{tile}_RGBIR.tif", _rgbir(tile), photometric="MINISBLACK")
        _write_rgb_label(root / f"top_potsdam_{tile}_label.tif", _ids(_tile_seed(tile)))
    for tile in eroded:
        _write_rgb_label(root / f"top_potsdam_{tile}_label_noBoundary.tif", _eroded(_ids(_tile_seed(tile))))
    with zipfile.ZipFile(root / "5_Labels_all.zip", "w") as z:
        z.writestr(f"top_potsdam_{tiles[0]}_label.tif", b"")
    return root


def make_vaihingen_as_shipped(root: Path, areas: tuple[int, ...]) -> Path:
    """Vaihingen as unzipped: the image archive's folder with top/, and both reference archives flat into the root.

    Images and references share their names (top_mosaic_09cm_areaN.tif); the images carry no CRS, as shipped.
    """
    top = root / "ISPRS_semantic_labeling_Vaihingen" / "top"
    top.mkdir(parents=True)
    for area in areas:
        irrg = np.random.default_rng(area).integers(0, 200, (3, SIZE, SIZE)).astype(np.uint8)
        write_tif(top / f"top_mosaic_09cm_area{area}.tif", irrg, crs=None, transform=Affine.identity())
        _write_rgb_label(root / f"top_mosaic_09cm_area{area}.tif", _ids(100 + area))
        _write_rgb_label(root / f"top_mosaic_09cm_area{area}_noBoundary.tif", _eroded(_ids(100 + area)))
    return root


# ---------------------------------------------------------------------------
# Finding the files by their official names
# ---------------------------------------------------------------------------
def test_potsdam_flat_label_archives_are_found(tmp_path):
    root = make_potsdam_as_shipped(tmp_path / "Potsdam", ("2_10", "2_13", "2_14"), eroded=("2_13",))
    (train_tile,) = potsdam(root, bands="rgbir")
    assert train_tile.label == root / "top_potsdam_2_10_label.tif"
    assert train_tile.image.parent == root / "4_Ortho_RGBIR" / "4_Ortho_RGBIR"
    np.testing.assert_array_equal(read_labels(train_tile), _ids(_tile_seed("2_10")))
    t13, t14 = potsdam(root, split="test", bands="rgbir")
    assert t13.eroded == root / "top_potsdam_2_13_label_noBoundary.tif" and t14.eroded is None
    np.testing.assert_array_equal(read_labels(t13, eroded=True), _eroded(_ids(_tile_seed("2_13"))))
    # the root's parent works too: names are searched in every folder below
    assert [s.name for s in potsdam(tmp_path, split="test", bands="rgbir")] == ["top_potsdam_2_13", "top_potsdam_2_14"]


def test_potsdam_still_zipped_says_unzip(tmp_path):
    root = tmp_path / "Potsdam"
    root.mkdir()
    with zipfile.ZipFile(root / "5_Labels_all.zip", "w") as z:
        z.writestr("top_potsdam_2_10_label.tif", b"")
    with pytest.raises(DatasetNotFoundError, match=r"top_potsdam_2_10_RGB\.tif .*5_Labels_all\.zip: unzip them"):
        potsdam(root)


def test_vaihingen_flat_reference_archives_are_found_and_told_from_images(tmp_path):
    root = make_vaihingen_as_shipped(tmp_path / "Vaihingen", (1, 2))
    (a1,) = vaihingen(root)
    assert a1.image == root / "ISPRS_semantic_labeling_Vaihingen" / "top" / "top_mosaic_09cm_area1.tif"
    assert a1.label == root / "top_mosaic_09cm_area1.tif"  # same name: told apart by the pixels
    assert a1.eroded == root / "top_mosaic_09cm_area1_noBoundary.tif"
    assert a1.band_names == ("nir", "red", "green")
    np.testing.assert_array_equal(read_labels(a1), _ids(101))
    (a2,) = vaihingen(root, split="test")
    np.testing.assert_array_equal(read_labels(a2, eroded=True), _eroded(_ids(102)))
    # references unpacked into a folder of the user's choosing, images flat beside it: still found
    other = tmp_path / "V2"
    (other / "refs").mkdir(parents=True)
    for f in root.glob("top_mosaic_09cm_area*.tif"):
        f.rename(other / "refs" / f.name)
    (root / "ISPRS_semantic_labeling_Vaihingen" / "top" / "top_mosaic_09cm_area1.tif").rename(
        other / "top_mosaic_09cm_area1.tif"
    )
    (s,) = vaihingen(other)
    assert s.image == other / "top_mosaic_09cm_area1.tif" and s.label == other / "refs" / "top_mosaic_09cm_area1.tif"


# ---------------------------------------------------------------------------
# One dataset-string parser for train and evaluate
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("potsdam:/d/P", DatasetSpec("potsdam", "/d/P")),
        ("potsdam:/d/P:rgbir", DatasetSpec("potsdam", "/d/P", None, "rgbir")),
        ("potsdam:/d/P:test:irrg", DatasetSpec("potsdam", "/d/P", "test", "irrg")),
        ("potsdam:/d/P:irrg:test", DatasetSpec("potsdam", "/d/P", "test", "irrg")),
        ("potsdam:C:/data/Potsdam", DatasetSpec("potsdam", "C:/data/Potsdam")),
        ("potsdam:C:/data/Potsdam:all", DatasetSpec("potsdam", "C:/data/Potsdam", "all")),
        ("vaihingen:D:\\V:train", DatasetSpec("vaihingen", "D:\\V", "train")),
        ("synthetic:C:/s:3:64", DatasetSpec("synthetic", "C:/s", n=3, size=64)),
    ],
)
def test_parse_dataset(text, expected):
    assert parse_dataset(text) == expected


def test_train_honours_the_dataset_string_bands_split_and_colons(tmp_path):
    # a root whose path holds a colon, as C:/data/Potsdam does on Windows
    root = make_potsdam_as_shipped(tmp_path / "C:" / "Potsdam", ("2_10", "2_13"))
    out = tmp_path / "irrg.pt"
    code, output = invoke("train", "--dataset", f"potsdam:{root}:irrg", *TRAIN_ARGS, "-o", out, "-q")
    assert code == 0, output
    spec = read_spec(out)
    assert spec.bands == ("nir", "red", "green") and spec.in_channels == 3
    # normalisation from bands 4, 1, 2 of the RGBIR tile (band k holds 10 * k + an offset + noise)
    np.testing.assert_allclose(spec.mean, _rgbir("2_10")[[3, 0, 1]].mean(axis=(1, 2)), rtol=1e-6)
    training = spec.extra["training"]
    assert training["samples"] == ["top_potsdam_2_10"]
    assert training["validation"] == {"source": "the test split", "samples": ["top_potsdam_2_13"]}
    # :test trains on the test split (and validates on the training one); :rgbir gives four bands
    out4 = tmp_path / "rgbir.pt"
    code, output = invoke("train", "--dataset", f"potsdam:{root}:test:rgbir", *TRAIN_ARGS, "-o", out4, "-q")
    assert code == 0, output
    spec4 = read_spec(out4)
    assert spec4.bands == ("red", "green", "blue", "nir")
    assert spec4.extra["training"]["samples"] == ["top_potsdam_2_13"]
    assert spec4.extra["training"]["validation"]["samples"] == ["top_potsdam_2_10"]
    # the string and --potsdam-bands must agree
    code, output = invoke("train", "--dataset", f"potsdam:{root}:irrg", "--potsdam-bands", "rgb", *TRAIN_ARGS)
    assert code == 1 and "names Potsdam bands irrg but potsdam_bands is rgb" in output


# ---------------------------------------------------------------------------
# Band meaning in evaluation
# ---------------------------------------------------------------------------
def test_match_bands_by_meaning():
    rgbir = Sample("t.tif", "l.tif", "rgb", "t", band_names=("Red", "Green", "Blue", "IR"))
    assert match_bands(rgbir, ("nir", "red", "green")) == (4, 1, 2)
    assert match_bands(rgbir, ("band1", "band2", "band3")) is None  # the model says nothing: count only
    assert match_bands(Sample("t.tif", "l.tif", "rgb", "t"), ("nir", "red", "green")) is None
    rgb = Sample("t.tif", "l.tif", "rgb", "t", band_names=("red", "green", "blue"))
    with pytest.raises(DatasetError, match=r"expects bands nir,red,green but t\.tif .* without nir"):
        match_bands(rgb, ("nir", "red", "green"))
    assert potsdam_bands_for(("nir", "red", "green")) == "irrg"
    assert potsdam_bands_for(("red", "green", "blue", "nir")) == "rgbir"
    assert potsdam_bands_for(("band1", "band2", "band3")) is None


@pytest.fixture(scope="module")
def potsdam_irrg(tmp_path_factory):
    """A Potsdam tree (test tile 2_13 with an official eroded reference, 2_14 without) and an IRRG model on it."""
    tmp = tmp_path_factory.mktemp("potsdam")
    root = make_potsdam_as_shipped(tmp / "Potsdam", ("2_10", "2_13", "2_14"), eroded=("2_13",))
    model = tmp / "irrg.pt"
    cfg = TrainConfig(
        dataset=f"potsdam:{root}:irrg", arch="fcn", encoder="resnet18", tile=64, batch=2, epochs=1,
        steps_per_epoch=1, val_windows=2, class_balance=False, output=model,
    )  # fmt: skip
    train(cfg)
    return root, model


def test_irrg_model_is_fed_nir_red_green_of_rgbir_tiles(potsdam_irrg, tmp_path):
    root, model = potsdam_irrg
    # tile 64 < 128: the old fixed --overlap 64 refused this model; the default now follows the tile
    code, output = invoke("evaluate", "-m", model, "--dataset", f"potsdam:{root}", "-o", tmp_path / "ev", "-q")
    assert code == 0, output
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert report["settings"]["overlap"] == default_overlap(64) == 16
    for image in report["images"]:
        assert image["bands_used"] == [4, 1, 2] and image["band_names"] == ["nir", "red", "green"]
        run = json.loads(next((tmp_path / "ev" / image["name"]).glob("*.run.json")).read_text())
        assert run["scene"]["bands_used"] == [4, 1, 2]  # what the pipeline really read
    # imagery without a near-infrared band is refused, with what it holds and how to choose
    rgb_only = tmp_path / "rgb"
    (rgb_only / "2_Ortho_RGB").mkdir(parents=True)
    write_tif(rgb_only / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif", _rgbir("2_13")[:3])
    _write_rgb_label(rgb_only / "top_potsdam_2_13_label.tif", _ids(1))
    code, output = invoke("evaluate", "-m", model, "--dataset", f"potsdam:{rgb_only}:rgb", "-o", tmp_path / "x")
    assert code == 1 and "Traceback" not in output
    assert "expects bands nir,red,green but top_potsdam_2_13_RGB.tif" in output and "holds red,green,blue" in output
    assert "--bands" in output
    # --bands overrides the matching: bands 1,2,3 are fed as they are
    code, output = invoke(
        "evaluate", "-m", model, "--dataset", f"potsdam:{rgb_only}:rgb", "--bands", "1,2,3", "-o", tmp_path / "y", "-q"
    )
    assert code == 0, output
    assert json.loads((tmp_path / "y" / "evaluation.json").read_text())["images"][0]["bands_used"] == [1, 2, 3]
    code, output = invoke("evaluate", "-m", model, "--dataset", f"potsdam:{root}", "--bands", "4,x")
    assert code == 2  # a malformed option is a usage error


def test_official_and_computed_eroded_references_are_never_pooled(potsdam_irrg, tmp_path):
    root, model = potsdam_irrg
    samples = potsdam(root, split="test", bands="irrg")
    assert [s.eroded is not None for s in samples] == [True, False]
    result = evaluate(model, samples, tmp_path / "ev")
    protocols = result.protocols
    assert {n: (p.reference, p.images) for n, p in protocols.items() if n.endswith("all classes")} == {
        "full, all classes": ("full", 2),
        "eroded (official), all classes": ("official", 1),
        "eroded (geoseg 3 px), all classes": ("computed", 2),
    }
    assert result.primary == "eroded (geoseg 3 px), all classes"
    # the official score covers the one tile that has the reference: it equals that tile's own score
    per_image = {e["name"]: e for e in result.per_image}
    official = result.scores["eroded (official), all classes"]
    assert per_image["top_potsdam_2_13"]["eroded (official), all classes"]["miou"] == round(official.miou, 5)
    assert "eroded (official), all classes" not in per_image["top_potsdam_2_14"]
    assert official.matrix.sum() == int((read_labels(samples[0], eroded=True) != 255).sum())
    report = json.loads(result.report.read_text())
    assert report["protocols"]["eroded (official), all classes"]["reference"].startswith("official eroded")
    assert report["protocols"]["eroded (geoseg 3 px), all classes"]["reference"].startswith("geoseg's 3-px")
    assert per_image["top_potsdam_2_14"]["eroded_reference"].startswith("geoseg's 3-px")


# ---------------------------------------------------------------------------
# The must-show: train + evaluate on both trees as the archives unzip
# ---------------------------------------------------------------------------
def test_train_and_evaluate_on_potsdam_as_shipped(tmp_path):
    root = make_potsdam_as_shipped(tmp_path / "Potsdam", ("2_10", "2_11", "2_13", "2_14"), eroded=("2_13",))
    model = tmp_path / "potsdam_irrg.pt"
    code, out = invoke("train", "--dataset", f"potsdam:{root}:irrg", *TRAIN_ARGS, "-o", model)
    print(out)
    assert code == 0, out
    code, out = invoke("evaluate", "-m", model, "--dataset", f"potsdam:{root}", "-o", tmp_path / "ev")
    print(out)
    assert code == 0, out
    assert "official eroded (noBoundary) references" in out and "geoseg's 3-px erosion of the full labels" in out
    assert "eroded (geoseg 3 px), all classes (geoseg's 3-px erosion of the full labels, 2 image(s)): OA" in out
    assert "bands fed to the model (nir,red,green): 4,1,2 (nir,red,green)" in out


def test_train_and_evaluate_on_vaihingen_as_shipped(tmp_path):
    root = make_vaihingen_as_shipped(tmp_path / "Vaihingen", (1, 3, 2, 4))
    model = tmp_path / "vaihingen.pt"
    code, out = invoke("train", "--dataset", f"vaihingen:{root}", *TRAIN_ARGS, "-o", model)
    print(out)
    assert code == 0, out
    spec = read_spec(model)
    assert spec.bands == ("nir", "red", "green")
    assert spec.extra["training"]["validation"]["samples"] == ["top_mosaic_09cm_area2", "top_mosaic_09cm_area4"]
    code, out = invoke("evaluate", "-m", model, "--dataset", f"vaihingen:{root}", "-o", tmp_path / "ev")
    print(out)
    assert code == 0, out
    assert "eroded, all classes (official eroded (noBoundary) references, 2 image(s)): OA" in out
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert report["protocols"]["full, all classes"]["reference"] == "full labels"
    assert [e["bands_used"] for e in report["images"]] == [[1, 2, 3], [1, 2, 3]]
    # the unreferenced images ran on a stand-in grid that was cleaned up
    assert read_image(vaihingen(root, split="test")[0]).shape == (3, SIZE, SIZE)
    assert not (tmp_path / "ev" / ".stand-in").exists()
