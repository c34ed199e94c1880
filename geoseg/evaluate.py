"""``geoseg evaluate``: score a model under the ISPRS protocol by running the full pipeline on test images.

Each test image goes through :func:`geoseg.pipeline.run` exactly as a user's
scene would (tiling, blending, seams), with exact output (no mapping unit, no
simplification); its class raster is compared with the reference labels.
Scores are reported under four protocols:

- ``full``: every labelled pixel; ``eroded``: object boundaries ignored, using
  the dataset's eroded ("noBoundary") reference where it has one, else the
  reference eroded here with a disc of radius 3 px (the ISPRS recipe);
- ``all classes`` or ``no clutter`` (clutter left out of the means and OA).

Images without georeferencing (PNG crops, Vaihingen tiles) run on a stand-in
grid: EPSG:3857 at the origin, where its scale is 1, with the model's pixel
size; only the class raster is used.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from .classes import NODATA
from .datasets import Sample, read_image, read_labels
from .errors import ConfigError
from .metrics import ConfusionMatrix, Scores, erode_boundaries, plot_confusion

__all__ = ["PROTOCOLS", "EvaluationResult", "evaluate"]

log = logging.getLogger(__name__)

#: Protocol name -> (eroded reference?, excluded class ids).
PROTOCOLS: dict[str, tuple[bool, tuple[int, ...]]] = {
    "full, all classes": (False, ()),
    "full, no clutter": (False, (5,)),
    "eroded, all classes": (True, ()),
    "eroded, no clutter": (True, (5,)),
}

#: progress(stage, done, total); stages "images" and those of :func:`geoseg.pipeline.run`.
Progress = Callable[[str, int, int], None]


@dataclass
class EvaluationResult:
    """Scores per protocol over all images, per-image scores, and the files written."""

    scores: dict[str, Scores]
    primary: str
    per_image: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    confusion_png: Path | None = None
    seconds: float = 0.0


def _scene_for(sample: Sample, folder: Path, gsd: float) -> tuple[Path, tuple[int, ...] | None]:
    """A GeoTIFF the pipeline can run: the image itself if georeferenced, else a stand-in copy."""
    with rasterio.open(sample.image) as ds:
        if ds.crs is not None and not ds.transform.is_identity and ds.driver == "GTiff":
            return Path(sample.image), sample.bands
    data = read_image(sample)
    out = folder / f"{sample.name}.tif"
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": "EPSG:3857",
        "transform": from_origin(0.0, data.shape[1] * gsd, gsd, gsd),
        "tiled": True,
        "compress": "deflate",
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out, None


def evaluate(
    model: str | os.PathLike[str],
    samples: Sequence[Sample],
    outdir: str | os.PathLike[str],
    *,
    tile: int | None = None,
    overlap: int = 64,
    chunk: int = 2048,
    device: str = "auto",
    batch: int | None = None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Run `model` on every sample with the full pipeline and score it against the reference labels.

    Writes, in `outdir`: ``evaluation.json`` (every protocol, per class and per
    image), ``confusion.png`` (the primary protocol: eroded with all classes),
    and each image's class raster under ``<name>/``.

    Raises
    ------
    ConfigError
        No samples.
    """
    from .config import RunConfig
    from .pipeline import run
    from .predict.checkpoint import read_spec

    if not samples:
        raise ConfigError("nothing to evaluate: the dataset holds no test images")
    t0 = time.perf_counter()
    spec = read_spec(model)
    n = spec.num_classes
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    scratch = outdir / ".stand-in"
    scratch.mkdir(exist_ok=True)
    # one matrix per reference (full, eroded); the no-clutter protocols score the same matrices
    totals = {False: ConfusionMatrix(n), True: ConfusionMatrix(n)}
    per_image: list[dict[str, Any]] = []
    try:
        for i, sample in enumerate(samples):
            scene, bands = _scene_for(sample, scratch, spec.gsd or 0.1)
            cfg = RunConfig(
                scene=scene,
                model=Path(model),
                outdir=outdir / sample.name,
                tile=tile,
                overlap=overlap,
                chunk=chunk,
                device=device,
                batch=batch,
                bands=bands,
                min_area=0,
                simplify=0,
                overwrite=True,
            )
            result = run(cfg, progress=progress)
            with rasterio.open(result.outputs["classes"]) as ds:
                pred = ds.read(1)
            reference = read_labels(sample)
            if sample.eroded is not None:
                eroded, eroded_kind = read_labels(sample, eroded=True), "dataset"
            else:
                eroded, eroded_kind = erode_boundaries(reference, 3), "computed (disc radius 3 px)"
            if pred.shape != reference.shape:
                raise ConfigError(
                    f"{sample.name}: prediction is {pred.shape} but the reference is {reference.shape}; "
                    "the label must cover the image pixel for pixel"
                )
            # pixels the scene marks as nodata have no prediction: they are not scored
            unscored = (pred == NODATA) & (reference != NODATA)
            entry: dict[str, Any] = {
                "name": sample.name,
                "image": str(sample.image),
                "pixels": int(pred.size),
                "unscored_nodata_pixels": int(unscored.sum()),
                "eroded_reference": eroded_kind,
                "seconds": round(result.timings["total"], 2),
            }
            matrices = {}
            for use_eroded, ref in ((False, reference), (True, eroded)):
                matrices[use_eroded] = ConfusionMatrix(n)
                matrices[use_eroded].update(pred, np.where(unscored, NODATA, ref))
                totals[use_eroded] = totals[use_eroded] + matrices[use_eroded]
            for name, (use_eroded, exclude) in PROTOCOLS.items():
                s = matrices[use_eroded].scores(exclude=exclude)
                entry[name] = {"oa": _num(s.overall_accuracy), "mean_f1": _num(s.mean_f1), "miou": _num(s.miou)}
            per_image.append(entry)
            if progress:
                progress("images", i + 1, len(samples))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    scores = {name: totals[use_eroded].scores(exclude=exclude) for name, (use_eroded, exclude) in PROTOCOLS.items()}
    primary = "eroded, all classes"
    report = {
        "model": {"path": str(Path(model).resolve()), "name": spec.name, "arch": spec.arch, "encoder": spec.encoder},
        "settings": {"tile": tile or spec.tile_size, "overlap": overlap, "chunk": chunk},
        "primary_protocol": primary,
        "protocols": {name: s.to_dict(spec.classes) for name, s in scores.items()},
        "images": per_image,
    }
    from .export import write_json

    report_path = write_json(report, outdir / "evaluation.json")
    png = plot_confusion(
        scores[primary], outdir / "confusion.png", classes=spec.classes, title=f"{spec.name}: {primary}"
    )
    return EvaluationResult(scores, primary, per_image, report_path, png, time.perf_counter() - t0)


def _num(v: float) -> float | None:
    return None if v != v else round(float(v), 5)
