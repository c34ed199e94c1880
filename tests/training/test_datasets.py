"""geoseg.training.datasets: ISPRS layouts and splits, image/label pairing, label decoding, lazy windows, statistics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geoseg.classes import ISPRS, NODATA
from geoseg.errors import GeosegError
from geoseg.training.datasets import (
    POTSDAM_TEST,
    POTSDAM_TRAIN,
    VAIHINGEN_TEST,
    VAIHINGEN_TRAIN,
    DatasetError,
    DatasetNotFoundError,
    Sample,
    WindowSampler,
    band_stats,
    class_pixels,
    dataset_from_spec,
    grid_windows,
    pairs,
    potsdam,
    read_image,
    read_labels,
    sampling,
    synthetic,
    vaihingen,
)
from tests.conftest import write_tif

LABELED = Path(__file__).resolve().parents[3] / "shared" / "data" / "labeled"
SIZE = 64


# ---------------------------------------------------------------------------
# Fake ISPRS trees
# ---------------------------------------------------------------------------
def _ids(seed: int, h: int = SIZE, w: int = SIZE) -> np.ndarray:
    """Class ids 0..5 in 8-pixel blocks (every class present)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(ISPRS), size=(h // 8 + 1, w // 8 + 1)).astype(np.uint8)
    blocks.flat[: len(ISPRS)] = np.arange(len(ISPRS))
    return np.kron(blocks, np.ones((8, 8), dtype=np.uint8))[:h, :w]


def _write_rgb_label(path: Path, ids: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tif(path, np.moveaxis(ISPRS.encode_rgb(ids), -1, 0))


def _eroded(ids: np.ndarray) -> np.ndarray:
    """The ids with a black (ignore) border on every block edge, like ISPRS noBoundary references."""
    out = ids.copy()
    out[::8, :] = NODATA
    out[:, ::8] = NODATA
    return out


def _tile_seed(tile: str) -> int:
    a, b = (int(v) for v in tile.split("_"))
    return a * 100 + b


def _make_potsdam(root: Path, tiles: dict[str, str], *, labels: str = "5_Labels_all", eroded: bool = True) -> Path:
    """Potsdam tree: `tiles` maps the official id to the id written in file names (e.g. '2_11' -> '02_11')."""
    for d in ("2_Ortho_RGB", "4_Ortho_RGBIR", labels, labels + "_noBoundary"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for tile, written in tiles.items():
        s = _tile_seed(tile)
        ones = np.ones((SIZE, SIZE), dtype=np.uint8)
        # Band k of tile s holds 10 * k + s % 7: selections are recognisable from pixel values.
        rgbir = np.stack([ones * (10 * k + s % 7) for k in (1, 2, 3, 4)])
        write_tif(root / "2_Ortho_RGB" / f"top_potsdam_{written}_RGB.tif", rgbir[:3])
        write_tif(root / "4_Ortho_RGBIR" / f"top_potsdam_{written}_RGBIR.tif", rgbir)
        _write_rgb_label(root / labels / f"top_potsdam_{written}_label.tif", _ids(s))
        if eroded:
            _write_rgb_label(
                root / (labels + "_noBoundary") / f"top_potsdam_{written}_label_noBoundary.tif", _eroded(_ids(s))
            )
    return root


@pytest.fixture
def potsdam_root(tmp_path: Path) -> Path:
    # Two training tiles (one zero-padded in its file names), one test tile, one tile outside both splits.
    return _make_potsdam(tmp_path / "Potsdam", {"2_10": "2_10", "2_11": "02_11", "6_7": "6_7", "2_13": "2_13"})


@pytest.fixture
def vaihingen_root(tmp_path: Path) -> Path:
    root = tmp_path / "Vaihingen"
    for area in (1, 2, 3):
        write_tif(_mkdir(root / "top") / f"top_mosaic_09cm_area{area}.tif", np.full((3, SIZE, SIZE), area, np.uint8))
    for area in (1, 3):  # training references as released to participants
        _write_rgb_label(root / "gts_for_participants" / f"top_mosaic_09cm_area{area}.tif", _ids(area))
    _write_rgb_label(root / "gts_eroded_for_participants" / "top_mosaic_09cm_area1_noBoundary.tif", _eroded(_ids(1)))
    complete = root / "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE"
    for area in (1, 2, 3):
        _write_rgb_label(complete / f"top_mosaic_09cm_area{area}.tif", _ids(100 + area))
    eroded_complete = root / "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE"
    _write_rgb_label(eroded_complete / "top_mosaic_09cm_area2_noBoundary.tif", _eroded(_ids(102)))
    return root


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------
def test_official_splits_are_disjoint_and_complete():
    assert len(POTSDAM_TRAIN) == 24 and len(POTSDAM_TEST) == 14
    assert not set(POTSDAM_TRAIN) & set(POTSDAM_TEST)
    assert "2_10" in POTSDAM_TRAIN and "7_13" in POTSDAM_TEST and "4_15" in POTSDAM_TEST
    assert len(VAIHINGEN_TRAIN) == 16 and len(VAIHINGEN_TEST) == 17
    assert not set(VAIHINGEN_TRAIN) & set(VAIHINGEN_TEST)
    # Areas 1..38 minus 9, 18, 19, 25, 36 (never released): 33 in all.
    assert sorted(VAIHINGEN_TRAIN + VAIHINGEN_TEST) == [a for a in range(1, 39) if a not in (9, 18, 19, 25, 36)]


# ---------------------------------------------------------------------------
# Potsdam
# ---------------------------------------------------------------------------
def test_potsdam_split_selection(potsdam_root):
    train = potsdam(potsdam_root)
    assert [s.name for s in train] == ["top_potsdam_2_10", "top_potsdam_2_11", "top_potsdam_6_7"]
    assert [s.name for s in potsdam(potsdam_root, split="test")] == ["top_potsdam_2_13"]
    assert len(potsdam(potsdam_root, split="all")) == 4
    s = train[1]  # written as 02_11
    assert s.image == potsdam_root / "2_Ortho_RGB" / "top_potsdam_02_11_RGB.tif"
    assert s.label == potsdam_root / "5_Labels_all" / "top_potsdam_02_11_label.tif"
    assert s.eroded == potsdam_root / "5_Labels_all_noBoundary" / "top_potsdam_02_11_label_noBoundary.tif"
    assert s.label_kind == "rgb" and s.bands is None


@pytest.mark.parametrize(
    ("bands", "expected"),
    [("rgb", [10, 20, 30]), ("rgbir", [10, 20, 30, 40]), ("irrg", [40, 10, 20])],
)
def test_potsdam_band_selection(potsdam_root, bands, expected):
    (s,) = [s for s in potsdam(potsdam_root, bands=bands) if s.name == "top_potsdam_6_7"]
    folder = "2_Ortho_RGB" if bands == "rgb" else "4_Ortho_RGBIR"
    assert s.image.parent.name == folder
    image = read_image(s, Window(3, 5, 7, 4))
    assert image.shape == (len(expected), 4, 7) and image.dtype == np.uint8
    offset = _tile_seed("6_7") % 7
    assert image[:, 0, 0].tolist() == [v + offset for v in expected]


def test_potsdam_labels_decode_and_eroded(potsdam_root):
    s = potsdam(potsdam_root)[0]
    ids = _ids(_tile_seed("2_10"))
    np.testing.assert_array_equal(read_labels(s), ids)
    np.testing.assert_array_equal(read_labels(s, Window(8, 16, 20, 10)), ids[16:26, 8:28])
    eroded = read_labels(s, eroded=True)
    np.testing.assert_array_equal(eroded, _eroded(ids))  # black boundaries -> 255
    assert (eroded == NODATA).any()


def test_potsdam_participants_layout_nested_and_without_eroded(tmp_path):
    root = _make_potsdam(tmp_path / "P", {"3_10": "3_10", "3_13": "3_13"}, labels="5_Labels_for_participants")
    (root / "5_Labels_for_participants_noBoundary").rename(root / "5_Labels_for_participants_no_Boundary")
    # Archives often unpack into a folder of the same name.
    (root / "2_Ortho_RGB").rename(tmp_path / "tmp")
    _mkdir(root / "2_Ortho_RGB")
    (tmp_path / "tmp").rename(root / "2_Ortho_RGB" / "2_Ortho_RGB")
    (s,) = potsdam(root)
    assert s.name == "top_potsdam_3_10" and s.image.parent == root / "2_Ortho_RGB" / "2_Ortho_RGB"
    assert s.eroded is not None and s.eroded.parent.name == "5_Labels_for_participants_no_Boundary"
    (s.eroded).unlink()
    assert potsdam(root)[0].eroded is None
    with pytest.raises(DatasetError, match="no eroded"):
        read_labels(potsdam(root)[0], eroded=True)


def test_potsdam_irrg_falls_back_to_irrg_folder(tmp_path):
    root = tmp_path / "P"
    write_tif(_mkdir(root / "3_Ortho_IRRG") / "top_potsdam_2_10_IRRG.tif", np.full((3, 8, 8), 7, np.uint8))
    _write_rgb_label(root / "5_Labels_all" / "top_potsdam_2_10_label.tif", _ids(1, 8, 8))
    (s,) = potsdam(root, bands="irrg")
    assert s.image.parent.name == "3_Ortho_IRRG" and s.bands is None


def test_potsdam_wrong_root_names_expected_path(tmp_path, potsdam_root):
    empty = _mkdir(tmp_path / "elsewhere")
    with pytest.raises(DatasetNotFoundError) as exc:
        potsdam(empty)
    msg = str(exc.value)
    assert "top_potsdam_2_10_RGB.tif and top_potsdam_2_10_label.tif anywhere under it" in msg
    assert str(empty / "2_Ortho_RGB") in msg and "pass the folder" in msg
    assert isinstance(exc.value, FileNotFoundError) and isinstance(exc.value, GeosegError)
    # The parent of the real root: files are found by their official names in any folder below it.
    assert [s.name for s in potsdam(potsdam_root.parent)] == [s.name for s in potsdam(potsdam_root)]
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        potsdam(tmp_path / "missing")
    with pytest.raises(ValueError, match="split must be"):
        potsdam(potsdam_root, split="val")  # type: ignore[arg-type]


def test_potsdam_band_meaning_travels_with_the_samples(potsdam_root):
    by_bands = {b: potsdam(potsdam_root, bands=b)[0] for b in ("rgb", "rgbir", "irrg")}
    assert by_bands["rgb"].selected_band_names == ("red", "green", "blue")
    assert by_bands["rgbir"].selected_band_names == ("red", "green", "blue", "nir")
    assert by_bands["irrg"].band_names == ("red", "green", "blue", "nir")  # the RGBIR file...
    assert by_bands["irrg"].selected_band_names == ("nir", "red", "green")  # ...read as 4, 1, 2


def test_potsdam_test_split_without_test_labels(tmp_path):
    root = _make_potsdam(tmp_path / "P", {"2_13": "2_13"}, labels="5_Labels_for_participants")
    (root / "5_Labels_for_participants" / "top_potsdam_2_13_label.tif").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"no reference labels: expected .*5_Labels_all"):
        potsdam(root, split="test")


# ---------------------------------------------------------------------------
# Vaihingen
# ---------------------------------------------------------------------------
def test_vaihingen_splits_labels_and_eroded(vaihingen_root):
    train = vaihingen(vaihingen_root)
    assert [s.name for s in train] == ["top_mosaic_09cm_area1", "top_mosaic_09cm_area3"]
    a1, a3 = train
    assert a1.label == vaihingen_root / "gts_for_participants" / "top_mosaic_09cm_area1.tif"
    assert a1.eroded == vaihingen_root / "gts_eroded_for_participants" / "top_mosaic_09cm_area1_noBoundary.tif"
    assert a3.eroded is None
    # Test areas use the COMPLETE references, even where another copy sits in gts_for_participants.
    _write_rgb_label(vaihingen_root / "gts_for_participants" / "top_mosaic_09cm_area2.tif", _ids(7))
    (a2,) = vaihingen(vaihingen_root, split="test")
    assert a2.label.parent.name == "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE"
    assert a2.eroded is not None
    assert a2.eroded.parent.name == "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE"
    np.testing.assert_array_equal(read_labels(a2), _ids(102))
    np.testing.assert_array_equal(read_labels(a2, eroded=True), _eroded(_ids(102)))
    np.testing.assert_array_equal(read_labels(a1), _ids(1))
    assert read_image(a2).tolist() == np.full((3, SIZE, SIZE), 2).tolist()
    assert [s.name for s in vaihingen(vaihingen_root, split="all")][-1] == "top_mosaic_09cm_area2"


def test_vaihingen_image_package_folder(tmp_path, vaihingen_root):
    # ISPRS_semantic_labeling_Vaihingen/top/... with the reference folders beside it.
    package = _mkdir(vaihingen_root / "ISPRS_semantic_labeling_Vaihingen")
    (vaihingen_root / "top").rename(package / "top")
    assert [s.name for s in vaihingen(vaihingen_root)] == ["top_mosaic_09cm_area1", "top_mosaic_09cm_area3"]
    assert len(vaihingen(package, split="all")) == 3


def test_vaihingen_wrong_root(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        vaihingen(_mkdir(tmp_path / "x"), split="test")
    assert str(tmp_path / "x" / "top" / "top_mosaic_09cm_area2.tif") in str(exc.value)


# ---------------------------------------------------------------------------
# pairs
# ---------------------------------------------------------------------------
def _index_label(path: Path, values: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tif(path, values.astype(np.uint8), **kw)


def test_pairs_folders_match_by_stem_with_suffixes(tmp_path):
    img_dir, lab_dir = _mkdir(tmp_path / "img"), _mkdir(tmp_path / "ann")
    ids = _ids(5, 16, 16)
    for stem in ("area1", "area11", "tile_b_RGB", "c"):
        write_tif(img_dir / f"{stem}.tif", np.zeros((3, 16, 16), np.uint8))
    _index_label(lab_dir / "area1_label.tif", ids)
    _index_label(lab_dir / "area11_gt.tif", ids)
    _index_label(lab_dir / "tile_b_noBoundary.tif", ids)
    _index_label(lab_dir / "c_ann_v2.tif", ids)  # unknown trailing tokens: longest common stem
    (tmp_path / "ann" / "notes.txt").write_text("not a raster")
    samples = {s.name: s for s in pairs(img_dir, lab_dir)}
    assert sorted(samples) == ["area1", "area11", "c", "tile_b"]
    assert samples["area1"].label.name == "area1_label.tif"
    assert samples["area11"].label.name == "area11_gt.tif"
    assert samples["tile_b"].image.name == "tile_b_RGB.tif"
    assert samples["c"].label.name == "c_ann_v2.tif"
    assert all(s.label_kind == "index" and s.ignore_value == NODATA for s in samples.values())
    np.testing.assert_array_equal(read_labels(samples["area11"]), ids)


def test_pairs_unmatched_files_are_reported(tmp_path):
    img_dir, lab_dir = _mkdir(tmp_path / "img"), _mkdir(tmp_path / "lab")
    for stem in ("a", "b", "c"):
        write_tif(img_dir / f"{stem}.tif", np.zeros((1, 4, 4), np.uint8))
    for stem in ("a_label", "b_label", "z_label"):
        _index_label(lab_dir / f"{stem}.tif", np.zeros((4, 4)))
    with pytest.raises(DatasetError) as exc:
        pairs(img_dir, lab_dir)
    msg = str(exc.value)
    assert "1 image(s) without a label: c.tif" in msg and "1 label(s) without an image: z_label.tif" in msg
    # Two references for one scene are ambiguous.
    (lab_dir / "z_label.tif").rename(lab_dir / "c_label.tif")
    _index_label(lab_dir / "c_gt.tif", np.zeros((4, 4)))
    with pytest.raises(DatasetError, match=r"both match image c\.tif"):
        pairs(img_dir, lab_dir)


def test_pairs_index_offset_and_ignore_mmseg_style(tmp_path):
    raw = np.arange(7, dtype=np.uint8).repeat(3)[None, :].repeat(2, axis=0)  # 0 (ignore), 1..6
    img = write_tif(tmp_path / "x.tif", np.zeros((3, *raw.shape), np.uint8))
    lab = _index_label(tmp_path / "x_ann.tif", raw)
    (s,) = pairs([img], [lab], index_offset=1, ignore_value=0)
    assert s.label_kind == "index" and s.index_offset == 1 and s.ignore_value == 0 and s.name == "x"
    got = read_labels(s)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.where(raw == 0, NODATA, raw.astype(int) - 1))
    # 255 as the ignore value, no offset.
    lab255 = _index_label(tmp_path / "y.tif", np.where(raw == 0, 255, raw - 1))
    (s255,) = pairs([img], [lab255])
    np.testing.assert_array_equal(read_labels(s255), got)


def test_pairs_index_value_out_of_range(tmp_path):
    raw = np.array([[1, 2, 7, 9]], dtype=np.uint8)
    img = write_tif(tmp_path / "x.tif", np.zeros((1, 1, 4), np.uint8))
    lab = _index_label(tmp_path / "bad_label.tif", raw)
    (s,) = pairs([img], [lab], index_offset=1, ignore_value=0)
    with pytest.raises(DatasetError, match=r"bad_label\.tif holds label value\(s\) 7, 9 .*index_offset=1"):
        read_labels(s)
    with pytest.raises(ValueError, match=r"class id 0\.\.5"):  # DatasetError is a ValueError
        read_labels(Sample(img, lab, "index", "x"))


def test_pairs_rgb_autodetect_and_paletted(tmp_path):
    ids = _ids(3, 16, 16)
    img = write_tif(tmp_path / "x.tif", np.zeros((3, 16, 16), np.uint8))
    rgb = _write_rgb_label(tmp_path / "x_rgb_label.tif", ids)
    (s,) = pairs([img], [rgb])
    assert s.label_kind == "rgb"
    np.testing.assert_array_equal(read_labels(s), ids)
    # An index file read as RGB needs a colour table; with one it decodes through it.
    pal = _index_label(tmp_path / "pal.tif", ids)
    with pytest.raises(DatasetError, match="no colour table"):
        read_labels(Sample(img, pal, "rgb", "x"))
    with rasterio.open(pal, "r+") as ds:
        ds.write_colormap(1, ISPRS.colormap())
    np.testing.assert_array_equal(read_labels(Sample(img, pal, "rgb", "x")), ids)


def test_pairs_checks_sizes_and_lists(tmp_path):
    img = write_tif(tmp_path / "x.tif", np.zeros((3, 8, 8), np.uint8))
    lab = _index_label(tmp_path / "x_label.tif", np.zeros((8, 9)))
    with pytest.raises(DatasetError, match=r"is 8 x 8 pixels but label x_label\.tif is 9 x 8"):
        pairs([img], [lab])
    with pytest.raises(DatasetError, match="1 image"):
        pairs([img], [lab, lab])
    with pytest.raises(DatasetNotFoundError):
        pairs([img], [tmp_path / "missing.tif"])


# ---------------------------------------------------------------------------
# WindowSampler
# ---------------------------------------------------------------------------
@pytest.fixture
def aligned_sample(tmp_path: Path) -> Sample:
    """A 96 x 80 image whose band 1 equals the label id and band 2 encodes the pixel position."""
    h, w = 96, 80
    ids = _ids(9, h, w)
    pos = (np.arange(h)[:, None] * w + np.arange(w)[None, :]).astype(np.uint16)
    img = write_tif(tmp_path / "s.tif", np.stack([ids.astype(np.uint16), pos]))
    lab = _index_label(tmp_path / "s_label.tif", ids)
    return Sample(img, lab, "index", "s", ignore_value=NODATA)


def test_window_sampler_deterministic(aligned_sample):
    a = WindowSampler([aligned_sample], size=32, per_epoch=6, seed=3)
    b = WindowSampler([aligned_sample], size=32, per_epoch=6, seed=3)
    assert len(a) == 6
    e0, e0b, e1 = list(a.epoch(0)), list(b.epoch(0)), list(a.epoch(1))
    assert len(e0) == 6
    for (i0, l0), (i1, l1) in zip(e0, e0b, strict=True):
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_array_equal(l0, l1)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(e0, e1, strict=True))
    other_seed = list(WindowSampler([aligned_sample], size=32, per_epoch=6, seed=4).epoch(0))
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(e0, other_seed, strict=True))
    for i in (0, 5):
        np.testing.assert_array_equal(a.get(i, 1)[0], e1[i][0])
        np.testing.assert_array_equal(a.get(i, 1)[1], e1[i][1])
    with pytest.raises(IndexError):
        a.get(6)


def test_window_sampler_shapes_and_dtypes(aligned_sample):
    image, label = WindowSampler([aligned_sample], size=32, per_epoch=1).get(0)
    assert image.shape == (2, 32, 32) and image.dtype == np.float32 and image.flags.c_contiguous
    assert label.shape == (32, 32) and label.dtype == np.int64 and label.flags.c_contiguous
    assert set(np.unique(label).tolist()) <= set(range(len(ISPRS)))


def _dihedral_images(a: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        r = np.rot90(a, k, axes=(-2, -1))
        out += [r, r[..., ::-1]]
    return out


def test_window_sampler_augmentation_keeps_alignment(aligned_sample):
    plain = WindowSampler([aligned_sample], size=32, per_epoch=24, seed=1, augment=False)
    aug = WindowSampler([aligned_sample], size=32, per_epoch=24, seed=1, augment=True)
    changed = 0
    for (pi, pl), (ai, al) in zip(plain.epoch(0), aug.epoch(0), strict=True):
        np.testing.assert_array_equal(ai[0], al.astype(np.float32))  # band 1 still equals the label
        # The same window, transformed by one of the 8 flips/rotations (the position band pins it down).
        transforms = _dihedral_images(pi)
        (t,) = [t for t, img in enumerate(transforms) if np.array_equal(ai, img)]
        np.testing.assert_array_equal(al, _dihedral_images(pl)[t])
        changed += not np.array_equal(ai, pi)
    assert changed >= 12


def test_window_sampler_reads_windows_lazily(tmp_path, monkeypatch):
    h, w = 200, 180
    img = write_tif(tmp_path / "big.tif", np.ones((3, h, w), np.uint8))
    lab = _index_label(tmp_path / "big_label.tif", _ids(2, h, w))
    sample = Sample(img, lab, "index", "big", ignore_value=NODATA)
    reads: list[tuple[Window | None, tuple[int, ...]]] = []
    real = sampling.read_image

    def spy(s, window=None):
        out = real(s, window)
        reads.append((window, out.shape))
        return out

    monkeypatch.setattr(sampling, "read_image", spy)
    list(WindowSampler([sample], size=32, per_epoch=5).epoch(0))
    assert len(reads) == 5
    for window, shape in reads:
        assert window is not None and (window.width, window.height) == (32, 32)
        assert shape == (3, 32, 32)
        assert 0 <= window.row_off <= h - 32 and 0 <= window.col_off <= w - 32


def test_window_sampler_min_valid_redraws(tmp_path):
    ids = np.full((256, 256), NODATA, dtype=np.uint8)
    ids[:128, :128] = 1  # a quarter of the tile is labelled
    img = write_tif(tmp_path / "m.tif", np.zeros((1, 256, 256), np.uint8))
    lab = _index_label(tmp_path / "m_label.tif", ids)
    sample = Sample(img, lab, "index", "m", ignore_value=NODATA)

    def valid_fractions(min_valid: float) -> list[float]:
        sampler = WindowSampler([sample], size=32, per_epoch=30, min_valid=min_valid, seed=2)
        return [float((label != NODATA).mean()) for _, label in sampler.epoch(0)]

    assert min(valid_fractions(0.0)) == 0.0  # without redraws, all-ignore windows occur
    assert min(valid_fractions(0.05)) >= 0.05


def test_window_sampler_pads_small_images(tmp_path):
    h, w = 20, 24
    ids = _ids(4, h, w)
    img = write_tif(tmp_path / "small.tif", (ids[None] + 1).astype(np.uint8))
    lab = _index_label(tmp_path / "small_label.tif", ids)
    sample = Sample(img, lab, "index", "small", ignore_value=NODATA)
    image, label = WindowSampler([sample], size=32, per_epoch=1, augment=False).get(0)
    assert image.shape == (1, 32, 32) and label.shape == (32, 32)
    np.testing.assert_array_equal(label[:h, :w], ids)
    np.testing.assert_array_equal(image[0, :h, :w], ids + 1)
    assert (label[h:, :] == NODATA).all() and (label[:, w:] == NODATA).all()
    assert (image[:, h:, :] == 0).all() and (image[:, :, w:] == 0).all()


def test_window_sampler_weights_by_pixels_and_checks_samples(tmp_path):
    big = Sample(
        write_tif(tmp_path / "big.tif", np.full((1, 128, 128), 1, np.uint8)),
        _index_label(tmp_path / "big_l.tif", np.zeros((128, 128))),
        "index",
        "big",
    )
    small = Sample(
        write_tif(tmp_path / "small.tif", np.full((1, 32, 32), 2, np.uint8)),
        _index_label(tmp_path / "small_l.tif", np.zeros((32, 32))),
        "index",
        "small",
    )
    sampler = WindowSampler([big, small], size=32, per_epoch=170, augment=False)
    from_small = sum(int(image[0, 0, 0] == 2) for image, _ in sampler.epoch(0))
    assert 2 <= from_small <= 25  # expected 170 / 17 = 10
    three = Sample(write_tif(tmp_path / "three.tif", np.zeros((3, 32, 32), np.uint8)), small.label, "index", "3")
    with pytest.raises(DatasetError, match="different numbers of image bands"):
        WindowSampler([big, three], size=32, per_epoch=1)
    with pytest.raises(DatasetError, match="but label"):
        WindowSampler([Sample(big.image, small.label, "index", "x")], size=32, per_epoch=1)
    with pytest.raises(ValueError, match="per_epoch"):
        WindowSampler([big], size=32, per_epoch=0)


def test_grid_windows_cover_the_image(tmp_path):
    img = write_tif(tmp_path / "g.tif", np.zeros((1, 50, 70), np.uint8))
    windows = grid_windows(Sample(img, img, "index", "g"), size=32)
    assert [(w.col_off, w.row_off, w.width, w.height) for w in windows] == [
        (0, 0, 32, 32),
        (32, 0, 32, 32),
        (64, 0, 6, 32),
        (0, 32, 32, 18),
        (32, 32, 32, 18),
        (64, 32, 6, 18),
    ]


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------
def test_band_stats_known_values_and_nodata(tmp_path):
    h, w = 64, 64
    data = np.empty((3, h, w), np.uint8)
    data[0] = 10
    data[1] = np.where((np.arange(w) % 2 == 0)[None, :], 20, 100)  # mean 60, std 40
    data[2] = 7
    data[:, :16, :] = 0  # nodata rows, excluded
    img = write_tif(tmp_path / "st.tif", data, nodata=0)
    sample = Sample(img, img, "index", "st")
    mean, std = band_stats([sample])
    np.testing.assert_allclose(mean, (10, 60, 7))
    np.testing.assert_allclose(std, (0, 40, 0), atol=1e-9)
    # Band selection and a small random budget: constant bands stay exact.
    mean, std = band_stats([Sample(img, img, "index", "st", bands=(3, 1))], max_pixels=500, seed=1)
    np.testing.assert_allclose(mean, (7, 10))
    np.testing.assert_allclose(std, (0, 0), atol=1e-9)
    nodata_only = write_tif(tmp_path / "nd.tif", np.zeros((1, 8, 8), np.uint8), nodata=0)
    with pytest.raises(DatasetError, match="no valid pixel"):
        band_stats([Sample(nodata_only, nodata_only, "index", "nd")])


def test_class_pixels_counts(tmp_path):
    ids = np.full((40, 50), NODATA, np.uint8)
    ids[:10] = 0
    ids[10:30, :20] = 3
    ids[30:, :] = 5
    img = write_tif(tmp_path / "c.tif", np.zeros((1, 40, 50), np.uint8))
    lab = _write_rgb_label(tmp_path / "c_label.tif", ids)
    sample = Sample(img, lab, "rgb", "c")
    counts = class_pixels([sample, sample])
    assert counts.dtype == np.int64
    assert counts.tolist() == [2 * 500, 0, 0, 2 * 400, 0, 2 * 500]
    big = _index_label(
        tmp_path / "big_label.tif", np.kron(np.arange(6, dtype=np.uint8).reshape(2, 3), np.ones((300, 200)))
    )
    big_sample = Sample(big, big, "index", "big")
    estimate = class_pixels([big_sample], max_pixels=60_000, seed=0)
    assert estimate.sum() == pytest.approx(600 * 600, rel=0.01)
    assert class_pixels([big_sample]).tolist() == [60_000] * 6


# ---------------------------------------------------------------------------
# Synthetic scenes and dataset strings
# ---------------------------------------------------------------------------
def test_synthetic_writes_scenes_and_reuses_them(tmp_path):
    samples = synthetic(tmp_path / "syn", n=2, size=256, seed=5)
    assert [s.name for s in samples] == ["synthetic_5", "synthetic_6"]
    for s in samples:
        assert s.image.is_file() and s.label.is_file() and s.label_kind == "index"
        labels = read_labels(s)
        assert labels.shape == (256, 256)
        assert set(np.unique(labels).tolist()) <= set(range(len(ISPRS))) | {NODATA}
        assert read_image(s).shape == (3, 256, 256)
    assert not np.array_equal(read_labels(samples[0]), read_labels(samples[1]))
    before = [s.image.stat().st_mtime_ns for s in samples]
    again = synthetic(tmp_path / "syn", n=2, size=256, seed=5)
    assert again == samples and [s.image.stat().st_mtime_ns for s in again] == before
    rgbn = synthetic(tmp_path / "syn", n=1, size=256, seed=5, bands="rgbn")
    assert read_image(rgbn[0]).shape[0] == 4  # different parameters: rendered again


def test_dataset_from_spec(potsdam_root, vaihingen_root, tmp_path):
    assert [s.name for s in dataset_from_spec(f"potsdam:{potsdam_root}:test")] == ["top_potsdam_2_13"]
    irrg = dataset_from_spec(f"potsdam:{potsdam_root}:all:irrg")
    assert len(irrg) == 4 and irrg[0].bands == (4, 1, 2)
    assert len(dataset_from_spec(f"potsdam:{potsdam_root}")) == 3
    assert [s.name for s in dataset_from_spec(f"vaihingen:{vaihingen_root}:test")] == ["top_mosaic_09cm_area2"]
    syn = dataset_from_spec(f"synthetic:{tmp_path / 'syn'}:2:64")
    assert len(syn) == 2 and read_labels(syn[0]).shape == (64, 64)
    assert syn[0].band_names == ("red", "green", "blue")
    for bad in ("mnist:/data", "potsdam", "synthetic:/tmp/x", "synthetic:/tmp/x:0"):
        with pytest.raises(ValueError, match=r"potsdam:ROOT\[:SPLIT\]"):
            dataset_from_spec(bad)


# ---------------------------------------------------------------------------
# Real ISPRS crops (mmsegmentation test data)
# ---------------------------------------------------------------------------
def _read_png(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read(1)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("folder", "stem"),
    [("isprs_potsdam", "potsdam_2_10_0_0_512_512"), ("isprs_vaihingen", "vaihingen_area1_0_0_512_512")],
)
def test_real_isprs_crops_decode_like_reference(folder, stem):
    if not (LABELED / folder).is_dir():
        pytest.skip(f"labelled sample data not found in {LABELED} (it sits beside the project checkout)")
    image = LABELED / folder / f"{stem}_img.png"
    expected = _read_png(LABELED / "derived" / f"{stem}_label_idx0-5_ignore255.png")
    (mmseg,) = pairs([image], [LABELED / folder / f"{stem}_ann.png"], index_offset=1, ignore_value=0)
    assert mmseg.label_kind == "index"
    np.testing.assert_array_equal(read_labels(mmseg), expected)
    (rgb,) = pairs([image], [LABELED / "derived" / f"{stem}_label_isprs_rgb.png"], label_kind="rgb")
    np.testing.assert_array_equal(read_labels(rgb), expected)
    assert (expected == NODATA).any() and len(np.unique(expected)) >= 5
    image_window, label_window = WindowSampler([mmseg], size=128, per_epoch=1, augment=False).get(0)
    assert image_window.shape == (3, 128, 128) and label_window.shape == (128, 128)


# ---------------------------------------------------------------------------
# mmsegmentation's ISPRS coding (0 = ignore, 1..6) read as class ids 0..5
# ---------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize(
    ("folder", "stem"),
    [("isprs_potsdam", "potsdam_2_10_0_0_512_512"), ("isprs_vaihingen", "vaihingen_area1_0_0_512_512")],
)
def test_auto_label_kind_refuses_mmseg_coding_of_real_crops(folder, stem, tmp_path):
    if not (LABELED / folder).is_dir():
        pytest.skip(f"labelled sample data not found in {LABELED} (it sits beside the project checkout)")
    # the mmseg layout: img_dir/ and ann_dir/, the same stem on both sides
    img_dir, ann_dir = _mkdir(tmp_path / "img_dir" / "train"), _mkdir(tmp_path / "ann_dir" / "train")
    (img_dir / f"{stem}.png").symlink_to(LABELED / folder / f"{stem}_img.png")
    (ann_dir / f"{stem}.png").symlink_to(LABELED / folder / f"{stem}_ann.png")
    raw = _read_png(ann_dir / f"{stem}.png")
    assert raw.min() == 0 and raw.max() == 5  # clutter (6) is absent: every value is a valid class id 0..5
    with pytest.raises(DatasetError) as exc:
        pairs(img_dir, ann_dir)
    msg = str(exc.value)
    assert "mmsegmentation's ISPRS coding" in msg and "thin bands" in msg
    assert "--label-kind index --index-offset 1 --ignore-value 0" in msg and "\n" not in msg
    # the flags the message names read the file correctly; an explicit kind is the user's word and is kept
    (s,) = pairs(img_dir, ann_dir, label_kind="index", index_offset=1, ignore_value=0)
    np.testing.assert_array_equal(read_labels(s), _read_png(LABELED / "derived" / f"{stem}_label_idx0-5_ignore255.png"))
    assert pairs(img_dir, ann_dir, label_kind="index")[0].index_offset == 0
    # geoseg's own coding of the same labels (255 = ignore) is accepted as it is
    (ok,) = pairs([img_dir / f"{stem}.png"], [LABELED / "derived" / f"{stem}_label_idx0-5_ignore255.png"])
    assert ok.label_kind == "index" and ok.index_offset == 0


def test_auto_label_kind_refuses_value_six_and_missing_zero(tmp_path):
    img = write_tif(tmp_path / "x.tif", np.zeros((3, 64, 64), np.uint8))
    ids = _ids(11)  # genuine class ids 0..5 in 8-px blocks: classes touch, 0 fills blocks
    (s,) = pairs([img], [_index_label(tmp_path / "ids.tif", ids)])
    assert s.index_offset == 0
    with pytest.raises(DatasetError, match=r"with value 6, which is no class id 0\.\.5"):
        pairs([img], [_index_label(tmp_path / "full_mmseg.tif", ids + 1)])  # mmseg coding of full labels
    with pytest.raises(DatasetError, match="no value 0"):
        pairs([img], [_index_label(tmp_path / "no_clutter.tif", np.where(ids == 5, 4, ids) + 1)])
