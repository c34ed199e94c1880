"""Segmentation scores following the ISPRS 2D semantic labelling protocol.

A :class:`ConfusionMatrix` accumulates pixel counts over any number of
prediction / reference pairs (tiles, scenes), rows indexed by the *reference*
(ground-truth) class and columns by the *predicted* class; :meth:`ConfusionMatrix.scores`
turns the counts into :class:`Scores`. Only numpy is needed; scipy is loaded by
:func:`erode_boundaries` and matplotlib by :func:`plot_confusion` when called.

Rules
-----
Per class ``c``, with ``TP`` the diagonal count, ``FP`` the other pixels
predicted as ``c`` and ``FN`` the other reference pixels of ``c``:

* ``precision = TP / (TP + FP)`` and ``recall = TP / (TP + FN)``; a 0/0 is NaN.
* ``F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN)`` and ``IoU = TP / (TP + FP + FN)``.

Ignored pixels
    A pixel whose reference is ``ignore`` (:data:`IGNORE`, 255 by default) is
    not counted at all, whatever was predicted there. A prediction outside
    ``0..n-1`` (say nodata) is accepted only on such pixels: against a
    reference class it raises, because silently dropping it would flatter the
    scores and counting it as a class would be a guess; the caller decides.

Absent classes
    A class is *evaluated* (counts in mean F1 and mIoU) only if it is present in
    the reference (support > 0) and not excluded. For a class with no reference
    pixels recall is undefined, so its F1 and IoU are reported as NaN too (the
    ``2PR / (P + R)`` form), even when it was predicted; its precision is 0 if it
    was predicted and NaN if not. Its false positives are not lost: they are
    false negatives of the reference classes whose pixels they took, and lower
    those classes' recall, F1 and IoU. A class present in the reference but
    never predicted has NaN precision, and 0 recall, F1 and IoU, which count in
    the means. mmsegmentation instead counts a class absent from the reference
    but predicted with IoU 0 in its mIoU (its union is not empty); that figure
    is :attr:`Scores.miou_mmseg`, equal to ``miou`` unless such a class exists
    (:attr:`Scores.predicted_absent`), for comparison with mmseg's numbers.

Excluded classes
    ``exclude`` (e.g. ``(5,)``: clutter, the ISPRS "without clutter" figures)
    leaves classes out of the means *and* of overall accuracy: OA is the sum of
    TP over the non-excluded classes divided by the number of reference pixels
    of the non-excluded classes. Pixels whose reference is an excluded class are
    thus dropped from OA, while pixels of a scored class predicted as an
    excluded class remain errors. Per-class scores are still reported for
    excluded classes and computed on the whole matrix (a clutter pixel predicted
    as building is a false positive of building); set such pixels to ``ignore``
    in the reference to drop them everywhere.

Eroded boundaries
    The ISPRS "noBoundary" references ignore a band around every boundary
    between two classes. Score against such a reference by passing it as the
    target; :func:`erode_boundaries` makes one from a full reference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import NODATA, ClassTable

__all__ = [
    "IGNORE",
    "TABLE_HEADER",
    "ConfusionMatrix",
    "Scores",
    "erode_boundaries",
    "format_rows",
    "plot_confusion",
]

#: Reference label value never scored: the same value as :data:`geoseg.classes.NODATA`.
IGNORE = NODATA

#: Column titles matching the rows of :func:`format_rows`.
TABLE_HEADER = ("class", "F1 %", "IoU %", "precision %", "recall %")

# Pixels converted to int64 at once in ConfusionMatrix.update: bounds the temporary memory to ~100 MB per call.
_CHUNK = 1 << 22


def _require_int(name: str, a: np.ndarray) -> None:
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids, got dtype {a.dtype}")


def _few(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values)} distinct)" if len(values) > limit else "")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class ConfusionMatrix:
    """Accumulates a ``(n, n)`` int64 confusion matrix; rows = reference (ground truth), columns = prediction.

    Parameters
    ----------
    num_classes
        Number of classes ``n``; class ids are ``0..n-1``.

    Examples
    --------
    >>> cm = ConfusionMatrix(2)
    >>> cm.update(np.array([0, 1, 1, 255]), np.array([0, 1, 0, 255]))
    >>> cm.matrix.tolist()
    [[1, 1], [0, 1]]
    >>> round(cm.scores().overall_accuracy, 4)
    0.6667
    """

    def __init__(self, num_classes: int) -> None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.matrix: np.ndarray = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())})"

    def update(self, pred: np.ndarray, target: np.ndarray, *, ignore: int = IGNORE) -> None:
        """Add the pixels of one prediction / reference pair.

        Parameters
        ----------
        pred, target
            Integer class-id arrays of the same shape, any integer dtype.
        ignore
            Reference value of pixels that are not scored (their prediction may be anything).

        Raises
        ------
        ValueError
            If the shapes differ, if `target` holds a value that is neither a class id nor
            `ignore`, or if `pred` is outside ``0..n-1`` where `target` has a class. The
            matrix is left unchanged.
        TypeError
            If either array is not of an integer dtype.
        """
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from reference shape {target.shape}")
        _require_int("pred", pred)
        _require_int("target", target)
        n = self.num_classes
        p_all, t_all = pred.reshape(-1), target.reshape(-1)
        # Counts go into a local matrix first so that an error in a later chunk leaves self.matrix untouched.
        counts = np.zeros(n * n, dtype=np.int64)
        for start in range(0, t_all.size, _CHUNK):
            t = t_all[start : start + _CHUNK].astype(np.int64)
            p = p_all[start : start + _CHUNK].astype(np.int64)
            scored = t != ignore
            bad = scored & ((t < 0) | (t >= n))
            if bad.any():
                raise ValueError(
                    f"reference holds value(s) {_few(np.unique(t[bad]))} that are neither a class id "
                    f"(0..{n - 1}) nor the ignore value {ignore}"
                )
            bad = scored & ((p < 0) | (p >= n))
            if bad.any():
                raise ValueError(
                    f"prediction holds value(s) {_few(np.unique(p[bad]))} outside the class ids 0..{n - 1} "
                    f"at {int(bad.sum())} pixel(s) where the reference has a class (e.g. nodata in the prediction): "
                    f"set those reference pixels to {ignore} or map the predictions to a class"
                )
            counts += np.bincount(t[scored] * n + p[scored], minlength=n * n)
        self.matrix += counts.reshape(n, n)

    def __add__(self, other: object) -> ConfusionMatrix:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot add confusion matrices of {self.num_classes} and {other.num_classes} classes")
        out = ConfusionMatrix(self.num_classes)
        out.matrix = self.matrix + other.matrix
        return out

    def scores(self, *, exclude: Sequence[int] = ()) -> Scores:
        """Per-class and mean scores of the counts so far (see the module docstring for the rules).

        Parameters
        ----------
        exclude
            Class ids left out of mean F1, mIoU and overall accuracy (e.g. ``(5,)`` for clutter).
        """
        n = self.num_classes
        excluded = tuple(sorted({int(c) for c in exclude}))
        if any(c < 0 or c >= n for c in excluded):
            raise ValueError(f"exclude must hold class ids 0..{n - 1}, got {tuple(exclude)}")
        m = self.matrix.copy()
        tp = np.diag(m).astype(np.float64)
        support = m.sum(axis=1).astype(np.float64)
        predicted = m.sum(axis=0).astype(np.float64)
        fp, fn = predicted - tp, support - tp
        present = support > 0
        precision = _ratio(tp, predicted)
        recall = _ratio(tp, support)
        # Masking by `present` rather than by the denominator makes F1 and IoU NaN for classes
        # absent from the reference even when predicted (recall undefined), see "Absent classes".
        f1 = _ratio(2 * tp, np.where(present, 2 * tp + fp + fn, 0))
        iou = _ratio(tp, np.where(present, tp + fp + fn, 0))
        kept = np.ones(n, dtype=bool)
        kept[list(excluded)] = False
        evaluated = tuple(int(c) for c in np.flatnonzero(present & kept))
        predicted_absent = tuple(int(c) for c in np.flatnonzero(~present & kept & (predicted > 0)))
        counted = len(evaluated) + len(predicted_absent)
        oa_den = support[kept].sum()
        return Scores(
            matrix=_readonly(m),
            overall_accuracy=float(tp[kept].sum() / oa_den) if oa_den > 0 else math.nan,
            precision=_readonly(precision),
            recall=_readonly(recall),
            f1=_readonly(f1),
            iou=_readonly(iou),
            mean_f1=float(f1[list(evaluated)].mean()) if evaluated else math.nan,
            miou=float(iou[list(evaluated)].mean()) if evaluated else math.nan,
            evaluated=evaluated,
            excluded=excluded,
            # the absent-but-predicted classes add IoU 0: only the denominator grows
            miou_mmseg=float(iou[list(evaluated)].sum() / counted) if counted else math.nan,
            predicted_absent=predicted_absent,
        )


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True, eq=False)
class Scores:
    """Scores of one confusion matrix; arrays are read-only, per class, indexed by class id.

    ``mean_f1`` and ``miou`` average the ``evaluated`` classes only (NaN if there are none);
    see the module docstring for how absent and excluded classes are treated. ``miou_mmseg``
    also counts the ``predicted_absent`` classes (not excluded, no reference pixel, predicted)
    with IoU 0, as mmsegmentation does.
    """

    matrix: np.ndarray
    overall_accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    iou: np.ndarray
    mean_f1: float
    miou: float
    evaluated: tuple[int, ...]
    excluded: tuple[int, ...]
    miou_mmseg: float = math.nan
    predicted_absent: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def support(self) -> np.ndarray:
        """Reference pixels per class (row sums)."""
        return self.matrix.sum(axis=1)

    @property
    def predicted(self) -> np.ndarray:
        """Predicted pixels per class (column sums), over scored reference pixels only."""
        return self.matrix.sum(axis=0)

    def to_dict(self, classes: ClassTable | None = None) -> dict[str, Any]:
        """JSON-ready summary: plain floats (NaN as ``None``), ints and lists.

        Parameters
        ----------
        classes
            When given (it must have ``num_classes`` entries), each per-class entry also carries its name.
        """
        if classes is not None and len(classes) != self.num_classes:
            raise ValueError(f"class table has {len(classes)} classes, the scores {self.num_classes}")
        support, predicted = self.support, self.predicted
        per_class: list[dict[str, Any]] = []
        for c in range(self.num_classes):
            entry: dict[str, Any] = {"id": c}
            if classes is not None:
                entry["name"] = classes[c].name
            entry.update(
                precision=_json_float(self.precision[c]),
                recall=_json_float(self.recall[c]),
                f1=_json_float(self.f1[c]),
                iou=_json_float(self.iou[c]),
                support=int(support[c]),
                predicted=int(predicted[c]),
                evaluated=c in self.evaluated,
                excluded=c in self.excluded,
            )
            per_class.append(entry)
        return {
            "overall_accuracy": _json_float(self.overall_accuracy),
            "mean_f1": _json_float(self.mean_f1),
            "miou": _json_float(self.miou),
            "miou_mmseg": _json_float(self.miou_mmseg),
            "predicted_absent": list(self.predicted_absent),
            "pixels": int(self.matrix.sum()),
            "evaluated": list(self.evaluated),
            "excluded": list(self.excluded),
            "classes": per_class,
            "matrix": self.matrix.tolist(),
        }


def erode_boundaries(labels: np.ndarray, radius: int = 3, *, ignore: int = IGNORE) -> np.ndarray:
    """Copy of a class-id image with a band around class boundaries set to `ignore`.

    A pixel becomes `ignore` when a pixel of *another class* lies within Euclidean distance
    `radius` of it (a disc footprint), which is how the ISPRS "noBoundary" references were
    made (disc of radius 3); both sides of a boundary lose ``radius`` pixels. `ignore` pixels
    stay `ignore` and are not a class: no band is cut around them, nor along the image edge.

    Parameters
    ----------
    labels
        ``(H, W)`` integer class ids.
    radius
        Disc radius in pixels; 0 returns an unchanged copy.
    ignore
        Value of pixels without a class, in the input and for the band.

    Examples
    --------
    >>> erode_boundaries(np.array([[0, 0, 0, 1, 1, 1, 255, 1]], np.uint8), 1).tolist()
    [[0, 0, 255, 255, 1, 1, 255, 1]]
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    _require_int("labels", labels)
    if labels.ndim != 2:
        raise ValueError(f"expected an (H, W) label image, got shape {labels.shape}")
    if int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    r = int(radius)
    out = labels.copy()
    if r == 0:
        return out
    valid = labels != ignore
    # The sentinels sit just outside the class values rather than at the dtype limits: ndimage
    # passes `cval` as a double, which cannot hold the int64 extremes.
    if labels.dtype.itemsize > 2:
        work = labels.astype(np.int64)
        lo = int(np.min(work, where=valid, initial=0)) - 1
        hi = int(np.max(work, where=valid, initial=0)) + 1
    else:
        work = labels.astype(np.int32)
        lo, hi = -1, 1 << 16
    yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
    disc = yy * yy + xx * xx <= r * r
    # Ignore pixels (and the outside of the image) get a value that can win neither filter,
    # so only real classes can reveal a boundary.
    largest = ndimage.maximum_filter(np.where(valid, work, lo), footprint=disc, mode="constant", cval=lo)
    smallest = ndimage.minimum_filter(np.where(valid, work, hi), footprint=disc, mode="constant", cval=hi)
    out[valid & ((largest != work) | (smallest != work))] = ignore
    return out


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.2f}"


def format_rows(scores: Scores, classes: ClassTable) -> list[tuple[str, str, str, str, str]]:
    """Rows of a terminal table under :data:`TABLE_HEADER`: one per class, then means, then OA.

    Values are percentages with two decimals, "–" where undefined; excluded classes are
    marked "(excluded)". Where a class was predicted but is absent from the reference, a row
    after the means gives mmsegmentation's mIoU (:attr:`Scores.miou_mmseg`). The library
    never prints: callers render the rows.

    Examples
    --------
    >>> from geoseg.classes import ClassTable, LandCoverClass
    >>> table = ClassTable((LandCoverClass(0, "a", (0, 0, 0)), LandCoverClass(1, "b", (1, 1, 1))))
    >>> cm = ConfusionMatrix(2)
    >>> cm.update(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]))
    >>> for row in format_rows(cm.scores(exclude=[1]), table):
    ...     print(row)
    ('a', '80.00', '66.67', '66.67', '100.00')
    ('b (excluded)', '66.67', '50.00', '100.00', '50.00')
    ('mean (1 class)', '80.00', '66.67', '', '')
    ('overall accuracy', '100.00', '', '', '')
    """
    if len(classes) != scores.num_classes:
        raise ValueError(f"class table has {len(classes)} classes, the scores {scores.num_classes}")
    rows = []
    for c in range(scores.num_classes):
        name = classes[c].name + (" (excluded)" if c in scores.excluded else "")
        rows.append((name, _pct(scores.f1[c]), _pct(scores.iou[c]), _pct(scores.precision[c]), _pct(scores.recall[c])))
    k = len(scores.evaluated)
    rows.append((f"mean ({k} class{'' if k == 1 else 'es'})", _pct(scores.mean_f1), _pct(scores.miou), "", ""))
    if scores.predicted_absent:
        k += len(scores.predicted_absent)
        rows.append((f"mean IoU as mmseg ({k} classes: absent but predicted = 0)", "", _pct(scores.miou_mmseg), "", ""))
    rows.append(("overall accuracy", _pct(scores.overall_accuracy), "", "", ""))
    return rows


def plot_confusion(scores: Scores, path: str | os.PathLike[str], *, classes: ClassTable, title: str = "") -> Path:
    """Write a PNG of the row-normalised confusion matrix (each reference row shows its recall split).

    Cells hold percentages of the reference row ("–" for a class absent from the reference);
    excluded classes are greyed and marked. The title line gives OA, mean F1 and mIoU. The
    file appears complete or not at all (written under a temporary name, then renamed).

    Returns
    -------
    Path
        `path`.
    """
    # The object-oriented API with an explicit Agg canvas renders without a display and leaves
    # pyplot alone: no global backend switch (which would close a notebook's figures), no figure to leak.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    if len(classes) != scores.num_classes:
        raise ValueError(f"class table has {len(classes)} classes, the scores {scores.num_classes}")
    path = Path(path)
    n = scores.num_classes
    support = scores.support
    norm = _ratio(scores.matrix.astype(np.float64), np.repeat(support[:, None], n, axis=1).astype(np.float64))

    fig = Figure(figsize=(1.0 * n + 3.5, 0.9 * n + 2.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.nan_to_num(norm), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the reference row", format=PercentFormatter(1))
    for i in range(n):
        for j in range(n):
            v = norm[i, j]
            text = "–" if math.isnan(v) else f"{100 * v:.1f}%"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if v > 0.5 else "black")
    for c in scores.excluded:
        ax.axhspan(c - 0.5, c + 0.5, color="0.5", alpha=0.45, linewidth=0)
        ax.axvspan(c - 0.5, c + 0.5, color="0.5", alpha=0.45, linewidth=0)
    names = [classes[c].name + (" (excluded)" if c in scores.excluded else "") for c in range(n)]
    ax.set_xticks(range(n), names, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for c in scores.excluded:
            labels[c].set_color("0.5")
            labels[c].set_fontstyle("italic")
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    line = (
        f"OA {_pct(scores.overall_accuracy)}%  ·  mean F1 {_pct(scores.mean_f1)}%  ·  "
        f"mIoU {_pct(scores.miou)}%  ({len(scores.evaluated)} classes)"
    )
    ax.set_title(f"{title}\n{line}" if title else line, fontsize=10)

    from .._files import staged

    with staged(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
