"""geoseg.training.metrics: hand-computed scores, the absent/excluded-class rules, boundary erosion, real labels."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoseg.classes import ISPRS, NODATA, ClassTable, LandCoverClass
from geoseg.training.metrics import (
    IGNORE,
    TABLE_HEADER,
    ConfusionMatrix,
    Scores,
    erode_boundaries,
    format_rows,
    plot_confusion,
)

LABELED = Path(__file__).resolve().parents[3] / "shared" / "data" / "labeled"
NAN = math.nan


def scores_of(pairs: list[tuple[int, int, int]], n: int, **kw) -> Scores:
    """Scores of (reference, prediction, count) triples."""
    t = np.concatenate([np.full(k, r) for r, _, k in pairs]).astype(np.uint8)
    p = np.concatenate([np.full(k, q) for _, q, k in pairs]).astype(np.uint8)
    cm = ConfusionMatrix(n)
    cm.update(p, t)
    return cm.scores(**kw)


# ---------------------------------------------------------------- hand-made example


# Twelve pixels, 3 classes, as (reference, prediction):
#   (0,0) (0,0) (0,0) (0,1) (1,1) (1,1) (1,0) (2,2) (2,1) (255,2) (255,255) (0,2)
# The two pixels with reference 255 are ignored (one of them has a nodata prediction, allowed there).
TARGET = np.array([[0, 0, 0, 0], [1, 1, 1, 2], [2, 255, 255, 0]], np.uint8)
PRED = np.array([[0, 0, 0, 1], [1, 1, 0, 2], [1, 2, 255, 2]], np.uint8)
# Confusion matrix (rows = reference, columns = prediction):
#        p0 p1 p2 | support
#   r0 [  3, 1, 1 ]   5
#   r1 [  1, 2, 0 ]   3
#   r2 [  0, 1, 1 ]   2
#   predicted: 4, 4, 2; 10 scored pixels
HAND_MATRIX = [[3, 1, 1], [1, 2, 0], [0, 1, 1]]
# TP = 3, 2, 1   FP = 1, 2, 1   FN = 2, 1, 1
HAND_PRECISION = [3 / 4, 2 / 4, 1 / 2]
HAND_RECALL = [3 / 5, 2 / 3, 1 / 2]
HAND_F1 = [6 / 9, 4 / 7, 2 / 4]  # 2TP / (2TP + FP + FN)
HAND_IOU = [3 / 6, 2 / 5, 1 / 3]  # TP / (TP + FP + FN)
HAND_OA = 6 / 10
HAND_MEAN_F1 = (6 / 9 + 4 / 7 + 2 / 4) / 3  # = 73/126
HAND_MIOU = (3 / 6 + 2 / 5 + 1 / 3) / 3  # = 37/90


def test_hand_made_example_matrix_and_every_score():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    assert cm.matrix.dtype == np.int64 and cm.matrix.shape == (3, 3)
    np.testing.assert_array_equal(cm.matrix, HAND_MATRIX)
    s = cm.scores()
    np.testing.assert_array_equal(s.matrix, HAND_MATRIX)
    np.testing.assert_allclose(s.precision, HAND_PRECISION, rtol=1e-15)
    np.testing.assert_allclose(s.recall, HAND_RECALL, rtol=1e-15)
    np.testing.assert_allclose(s.f1, HAND_F1, rtol=1e-15)
    np.testing.assert_allclose(s.iou, HAND_IOU, rtol=1e-15)
    # F1 = 2PR/(P+R) agrees with the count form
    p, r = np.array(HAND_PRECISION), np.array(HAND_RECALL)
    np.testing.assert_allclose(s.f1, 2 * p * r / (p + r), rtol=1e-15)
    assert s.overall_accuracy == pytest.approx(HAND_OA, rel=1e-15)
    assert s.mean_f1 == pytest.approx(73 / 126, rel=1e-15) == HAND_MEAN_F1
    assert s.miou == pytest.approx(37 / 90, rel=1e-15) == HAND_MIOU
    assert s.evaluated == (0, 1, 2) and s.excluded == ()
    np.testing.assert_array_equal(s.support, [5, 3, 2])
    np.testing.assert_array_equal(s.predicted, [4, 4, 2])


def test_scores_are_read_only_and_detached_from_the_matrix():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    s = cm.scores()
    with pytest.raises(ValueError, match="read-only"):
        s.f1[0] = 1.0
    cm.update(PRED, TARGET)
    np.testing.assert_array_equal(s.matrix, HAND_MATRIX)  # later updates do not change earlier scores


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int32, np.int64])
def test_any_integer_dtype(dtype):
    target = np.where(TARGET == 255, 99, TARGET).astype(dtype)  # 99 fits every dtype tested
    pred = np.where(PRED == 255, 98, PRED).astype(dtype)
    cm = ConfusionMatrix(3)
    cm.update(pred, target, ignore=99)
    np.testing.assert_array_equal(cm.matrix, HAND_MATRIX)


# ---------------------------------------------------------------- ignore and errors


def test_ignore_pixels_are_not_counted_whatever_is_predicted():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 2, 255, 7]), np.full(5, IGNORE))
    assert cm.matrix.sum() == 0
    cm.update(np.array([2, 1, 0]), np.array([IGNORE, 1, IGNORE]))
    np.testing.assert_array_equal(cm.matrix, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert IGNORE == NODATA == 255


def test_custom_ignore_value():
    cm = ConfusionMatrix(2)
    cm.update(np.array([1, 1, 0]), np.array([0, 1, 0]), ignore=0)  # mmseg-style 0 = ignore: class 0 unscored
    np.testing.assert_array_equal(cm.matrix, [[0, 0], [0, 1]])


def test_invalid_target_value_raises_and_names_it():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"\b7\b.*neither a class id"):
        cm.update(np.zeros(4, np.uint8), np.array([0, 1, 7, 255], np.uint8))
    assert cm.matrix.sum() == 0


def test_shape_mismatch_raises_with_both_shapes():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        cm.update(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8))


def test_invalid_prediction_on_a_reference_class_raises():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    pred = PRED.copy()
    pred[0, 0] = 255  # nodata prediction where the reference says class 0
    with pytest.raises(ValueError, match=r"prediction holds value\(s\) 255.*1 pixel"):
        cm.update(pred, TARGET)
    with pytest.raises(ValueError, match="prediction"):
        cm.update(np.array([-1, 0]), np.array([1, 1]))
    np.testing.assert_array_equal(cm.matrix, HAND_MATRIX)  # failed updates leave the counts as they were


def test_errors_in_a_later_chunk_leave_the_matrix_unchanged(monkeypatch):
    import geoseg.training.metrics

    monkeypatch.setattr(geoseg.training.metrics, "_CHUNK", 4)
    cm = ConfusionMatrix(3)
    target = np.array([0, 1, 2, 0, 1, 2, 0, 9])
    with pytest.raises(ValueError, match=r"\b9\b"):
        cm.update(np.zeros(8, np.int64), target)
    assert cm.matrix.sum() == 0
    cm.update(PRED, TARGET)  # chunking gives the same counts as one pass
    np.testing.assert_array_equal(cm.matrix, HAND_MATRIX)


def test_bad_arguments():
    with pytest.raises(TypeError, match="integer"):
        ConfusionMatrix(3).update(np.zeros(2), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="positive"):
        ConfusionMatrix(0)
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        cm.scores(exclude=(3,))
    with pytest.raises(ValueError, match="3 and 4"):
        _ = cm + ConfusionMatrix(4)
    with pytest.raises(TypeError):
        _ = cm + 1


# ---------------------------------------------------------------- absent and excluded classes


def test_class_absent_from_reference_but_predicted():
    # 4 classes; class 2 is predicted twice but absent from the reference; class 3 absent from both.
    #   (0,0)x2 (0,2)x1 (1,1)x2 (1,2)x1
    s = scores_of([(0, 0, 2), (0, 2, 1), (1, 1, 2), (1, 2, 1)], 4)
    # class 2: TP 0, FP 2, support 0 -> precision 0/2 = 0, recall/F1/IoU undefined
    assert s.precision[2] == 0.0
    assert np.isnan(s.recall[2]) and np.isnan(s.f1[2]) and np.isnan(s.iou[2])
    # class 3: nothing at all
    assert np.isnan([s.precision[3], s.recall[3], s.f1[3], s.iou[3]]).all()
    assert s.evaluated == (0, 1)
    # class 2's false positives are false negatives of classes 0 and 1: TP 2, FP 0, FN 1 each
    np.testing.assert_allclose(s.f1[:2], [4 / 5, 4 / 5])  # 2*2 / (2*2 + 0 + 1)
    np.testing.assert_allclose(s.iou[:2], [2 / 3, 2 / 3])  # 2 / (2 + 0 + 1)
    assert s.mean_f1 == pytest.approx(4 / 5)
    assert s.miou == pytest.approx(2 / 3)
    assert s.overall_accuracy == pytest.approx(4 / 6)


def test_class_present_but_never_predicted_counts_as_zero():
    # (0,0)x2 (1,0)x2: class 1 never predicted -> precision 0/0 NaN, recall 0, F1 0, IoU 0, evaluated
    s = scores_of([(0, 0, 2), (1, 0, 2)], 3)
    assert np.isnan(s.precision[1]) and s.recall[1] == 0 and s.f1[1] == 0 and s.iou[1] == 0
    assert s.evaluated == (0, 1)
    # class 0: TP 2, FP 2, FN 0 -> F1 4/6, IoU 2/4
    assert s.mean_f1 == pytest.approx((4 / 6 + 0) / 2)
    assert s.miou == pytest.approx((2 / 4 + 0) / 2)


def test_empty_matrix_scores_are_nan():
    s = ConfusionMatrix(3).scores()
    assert s.evaluated == ()
    assert math.isnan(s.overall_accuracy) and math.isnan(s.mean_f1) and math.isnan(s.miou)
    assert np.isnan(s.f1).all()


# (reference, prediction, count); class 5 = clutter, classes 2, 3, 4 absent from both
CLUTTER_PAIRS = [(0, 0, 4), (0, 5, 1), (1, 1, 3), (1, 0, 1), (5, 5, 2), (5, 1, 1)]
# support: c0 5, c1 4, c5 3 (12 pixels); predicted: c0 5, c1 4, c5 3
# c0: TP 4 FP 1 FN 1 -> F1 8/10, IoU 4/6
# c1: TP 3 FP 1 (a clutter pixel) FN 1 -> F1 6/8, IoU 3/5
# c5: TP 2 FP 1 FN 1 -> F1 4/6, IoU 2/4


def test_exclude_clutter_hand_computed():
    full = scores_of(CLUTTER_PAIRS, 6)
    assert full.evaluated == (0, 1, 5)
    assert full.overall_accuracy == pytest.approx(9 / 12)
    assert full.mean_f1 == pytest.approx((8 / 10 + 6 / 8 + 4 / 6) / 3)  # 133/180
    assert full.miou == pytest.approx((4 / 6 + 3 / 5 + 2 / 4) / 3)  # 53/90

    s = scores_of(CLUTTER_PAIRS, 6, exclude=(5,))
    assert s.excluded == (5,) and s.evaluated == (0, 1)
    # OA drops the 3 clutter reference pixels; the class-0 pixel predicted as clutter stays an error: 7/9
    assert s.overall_accuracy == pytest.approx((4 + 3) / (5 + 4))
    assert s.mean_f1 == pytest.approx((8 / 10 + 6 / 8) / 2)  # 0.775
    assert s.miou == pytest.approx((4 / 6 + 3 / 5) / 2)  # 19/30
    # per-class scores are still reported, from the whole matrix
    np.testing.assert_allclose(s.f1[[0, 1, 5]], [8 / 10, 6 / 8, 4 / 6])
    np.testing.assert_allclose(s.iou[[0, 1, 5]], [4 / 6, 3 / 5, 2 / 4])
    assert np.isnan(s.f1[[2, 3, 4]]).all()


def test_exclude_a_class_absent_from_the_reference_changes_nothing_but_the_label():
    s = scores_of(CLUTTER_PAIRS, 6, exclude=(3,))
    full = scores_of(CLUTTER_PAIRS, 6)
    assert s.excluded == (3,) and s.evaluated == full.evaluated
    assert s.overall_accuracy == full.overall_accuracy and s.miou == full.miou


# ---------------------------------------------------------------- accumulation


def test_two_updates_equal_one_update_on_the_concatenation():
    rng = np.random.default_rng(3)
    t1, t2 = rng.integers(0, 6, (20, 30)), rng.integers(0, 6, (15, 30))
    t1[rng.random(t1.shape) < 0.1] = IGNORE
    p1, p2 = rng.integers(0, 6, t1.shape), rng.integers(0, 6, t2.shape)
    p1[t1 == IGNORE] = 255  # nodata predictions on ignored pixels are fine
    a, both = ConfusionMatrix(6), ConfusionMatrix(6)
    a.update(p1, t1)
    a.update(p2, t2)
    both.update(np.concatenate([p1, p2]), np.concatenate([t1, t2]))
    np.testing.assert_array_equal(a.matrix, both.matrix)
    assert a.matrix.sum() == (t1 != IGNORE).sum() + t2.size

    a1, a2 = ConfusionMatrix(6), ConfusionMatrix(6)
    a1.update(p1, t1)
    a2.update(p2, t2)
    total = a1 + a2
    assert isinstance(total, ConfusionMatrix) and total is not a1 and total is not a2
    np.testing.assert_array_equal(total.matrix, both.matrix)
    assert a1.matrix.sum() == (t1 != IGNORE).sum()  # operands unchanged
    assert total.scores().miou == both.scores().miou


# ---------------------------------------------------------------- to_dict and table rows


def test_to_dict_is_json_ready():
    s = scores_of(CLUTTER_PAIRS, 6, exclude=(5,))
    d = s.to_dict(ISPRS)
    text = json.dumps(d, allow_nan=False)  # NaN must have become None
    assert json.loads(text) == d
    assert d["overall_accuracy"] == pytest.approx(7 / 9)
    assert d["matrix"] == s.matrix.tolist() and isinstance(d["matrix"][0][0], int)
    assert d["evaluated"] == [0, 1] and d["excluded"] == [5]
    c1 = d["classes"][1]
    assert c1["id"] == 1 and c1["name"] == "building"
    assert c1["support"] == 4 and c1["predicted"] == 4
    assert c1["f1"] == pytest.approx(6 / 8) and c1["iou"] == pytest.approx(3 / 5)
    assert c1["precision"] == pytest.approx(3 / 4) and c1["recall"] == pytest.approx(3 / 4)
    assert d["classes"][3]["f1"] is None and d["classes"][3]["support"] == 0
    assert "name" not in s.to_dict()["classes"][0]
    with pytest.raises(ValueError, match="6"):
        s.to_dict(ClassTable(ISPRS.classes[:3]))


def test_format_rows():
    s = scores_of(CLUTTER_PAIRS, 6, exclude=(5,))
    rows = format_rows(s, ISPRS)
    assert len(TABLE_HEADER) == 5 and all(len(r) == 5 for r in rows)
    assert len(rows) == 6 + 2
    assert rows[0] == ("impervious surfaces", "80.00", "66.67", "80.00", "80.00")
    assert rows[3] == ("tree", "–", "–", "–", "–")
    assert rows[5][0] == "clutter (excluded)" and rows[5][1] == "66.67"
    assert rows[6] == ("mean (2 classes)", "77.50", "63.33", "", "")
    assert rows[7] == ("overall accuracy", "77.78", "", "", "")


# ---------------------------------------------------------------- boundary erosion


def erode_slow(labels: np.ndarray, radius: int, ignore: int = IGNORE) -> np.ndarray:
    """Reference: a class pixel with a pixel of another class within Euclidean distance `radius` becomes ignore."""
    h, w = labels.shape
    out = labels.copy()
    for y in range(h):
        for x in range(w):
            c = labels[y, x]
            if c == ignore:
                continue
            for v in range(max(0, y - radius), min(h, y + radius + 1)):
                for u in range(max(0, x - radius), min(w, x + radius + 1)):
                    d = labels[v, u]
                    if d != ignore and d != c and (v - y) ** 2 + (u - x) ** 2 <= radius**2:
                        out[y, x] = ignore
    return out


def test_erode_two_regions_and_an_ignore_area():
    labels = np.zeros((9, 12), np.uint8)
    labels[:, 6:] = 1  # vertical boundary between columns 5 and 6
    labels[0:3, 0:2] = IGNORE  # an ignore block inside class 0
    labels[6:9, 10:12] = IGNORE  # and one inside class 1
    out = erode_boundaries(labels, 2)
    assert out.dtype == labels.dtype
    expected = labels.copy()
    expected[:, 4:8] = IGNORE  # class-0 columns 4, 5 and class-1 columns 6, 7 lie within 2 px of the other class
    np.testing.assert_array_equal(out, expected)
    # ignore areas cut no band: their class neighbours survive
    assert (out[0:3, 2] == 0).all() and (out[3, 0:2] == 0).all() and (out[6:9, 9] == 1).all()
    assert labels[0, 5] == 0  # input untouched


def test_erode_uses_a_disc_not_a_square():
    labels = np.zeros((9, 9), np.uint8)
    labels[4, 4] = 1
    out = erode_boundaries(labels, 2)
    dy, dx = np.mgrid[-4:5, -4:5]
    np.testing.assert_array_equal(out == IGNORE, dy**2 + dx**2 <= 4)
    assert out[2, 2] == 0 and out[2, 4] == IGNORE and out[3, 3] == IGNORE  # corner (2,2) is 2.83 px away


def test_erode_radius_zero_and_bad_input():
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    out = erode_boundaries(labels, 0)
    np.testing.assert_array_equal(out, labels)
    assert out is not labels
    with pytest.raises(ValueError, match="radius"):
        erode_boundaries(labels, -1)
    with pytest.raises(ValueError, match="shape"):
        erode_boundaries(labels[None], 1)
    with pytest.raises(TypeError, match="integer"):
        erode_boundaries(labels.astype(float), 1)


@pytest.mark.parametrize("radius", [1, 2, 3, 4])
def test_erode_matches_slow_reference_on_random_blobs(radius):
    from scipy import ndimage

    rng = np.random.default_rng(radius)
    field = ndimage.gaussian_filter(rng.random((3, 40, 36)), (0, 3, 3))
    labels = field.argmax(axis=0).astype(np.uint8)  # 3 smooth class blobs
    labels[ndimage.gaussian_filter(rng.random((40, 36)), 2) > 0.53] = IGNORE  # and some ignore blobs
    assert len(np.unique(labels)) == 4
    out = erode_boundaries(labels, radius)
    np.testing.assert_array_equal(out, erode_slow(labels, radius))
    assert 0 < (out == IGNORE).sum() - (labels == IGNORE).sum() < (labels != IGNORE).sum()
    # custom ignore value and a wider dtype give the same band
    wide = np.where(labels == IGNORE, 9, labels).astype(np.int32)
    np.testing.assert_array_equal(erode_boundaries(wide, radius, ignore=9), np.where(out == IGNORE, 9, out))


# ---------------------------------------------------------------- real ISPRS labels


@pytest.fixture(scope="module")
def labeled() -> Path:
    if not LABELED.is_dir():
        pytest.skip(f"labelled sample data {LABELED} is absent (it sits beside the project checkout)")
    return LABELED


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "ann, name",
    [
        ("isprs_potsdam/potsdam_2_10_0_0_512_512_ann.png", "potsdam_2_10_0_0_512_512"),
        ("isprs_vaihingen/vaihingen_area1_0_0_512_512_ann.png", "vaihingen_area1_0_0_512_512"),
    ],
)
def test_real_isprs_labels_codec_and_self_score(labeled, ann, name):
    mmseg = read_png(labeled / ann)  # 0 = ignore (eroded boundary), 1..6 = impervious..clutter
    assert mmseg.ndim == 2 and mmseg.max() <= 6
    idx = np.where(mmseg == 0, 255, mmseg.astype(np.int16) - 1).astype(np.uint8)
    derived = read_png(labeled / "derived" / f"{name}_label_idx0-5_ignore255.png")
    np.testing.assert_array_equal(idx, derived)
    rgb = read_png(labeled / "derived" / f"{name}_label_isprs_rgb.png")
    np.testing.assert_array_equal(ISPRS.decode_rgb(rgb), idx)  # black boundaries decode to 255
    assert 0 < (idx == IGNORE).mean() < 0.5

    cm = ConfusionMatrix(len(ISPRS))
    cm.update(idx, idx)
    s = cm.scores()
    present = tuple(int(c) for c in np.unique(idx) if c != IGNORE)
    assert len(present) >= 3
    assert s.overall_accuracy == 1.0 and s.miou == 1.0 and s.mean_f1 == 1.0
    assert s.evaluated == present
    assert cm.matrix.sum() == (idx != IGNORE).sum()
    # the mmseg index label scores the same with ignore=0 once shifted back
    cm0 = ConfusionMatrix(len(ISPRS) + 1)
    cm0.update(mmseg, mmseg, ignore=0)
    np.testing.assert_array_equal(cm0.matrix[1:, 1:], cm.matrix)


# ---------------------------------------------------------------- plot


def test_plot_confusion_writes_a_png_and_no_temporary_file(tmp_path):
    s = scores_of(CLUTTER_PAIRS, 6, exclude=(5,))
    out = plot_confusion(s, tmp_path / "cm.png", classes=ISPRS, title="test run")
    assert out == tmp_path / "cm.png"
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.width > 100 and im.height > 100
        pixels = np.asarray(im.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # not a blank single-colour image


def test_plot_confusion_failure_leaves_nothing(tmp_path):
    table = ClassTable((LandCoverClass(0, "a", (0, 0, 0)), LandCoverClass(1, "b", (1, 1, 1))))
    with pytest.raises(ValueError, match="class table"):
        plot_confusion(scores_of(CLUTTER_PAIRS, 6), tmp_path / "cm.png", classes=table)
    with pytest.raises(OSError):
        plot_confusion(scores_of(CLUTTER_PAIRS, 6), tmp_path / "missing" / "cm.png", classes=ISPRS)
    assert list(tmp_path.iterdir()) == []


def test_import_loads_neither_torch_nor_matplotlib():
    code = "import sys, geoseg.training.metrics; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert res.stdout.strip() == "[]"


def test_miou_as_mmseg_counts_absent_but_predicted_classes_as_zero():
    # class 2 has no reference pixel but is predicted twice; class 3 is neither in the reference nor predicted
    s = scores_of([(0, 0, 5), (0, 2, 1), (1, 1, 3), (1, 2, 1)], 4)
    assert s.evaluated == (0, 1) and s.predicted_absent == (2,)
    assert s.miou == pytest.approx((5 / 6 + 3 / 4) / 2)
    assert s.miou_mmseg == pytest.approx((5 / 6 + 3 / 4 + 0) / 3)
    d = s.to_dict()
    assert d["miou_mmseg"] == pytest.approx(s.miou_mmseg) and d["predicted_absent"] == [2]
    rows = format_rows(s, ClassTable(tuple(LandCoverClass(i, f"c{i}", (i, i, i)) for i in range(4))))
    assert rows[-2] == ("mean IoU as mmseg (3 classes: absent but predicted = 0)", "", "52.78", "", "")
    # excluded classes stay out of both; without absent-but-predicted classes the two agree
    assert scores_of([(0, 0, 5), (0, 2, 1), (1, 1, 3), (1, 2, 1)], 4, exclude=(2,)).predicted_absent == ()
    same = scores_of([(0, 0, 5), (1, 1, 3), (1, 0, 1)], 3)
    assert same.predicted_absent == () and same.miou_mmseg == same.miou
