"""``geoseg vectorize``: polygonise an existing class raster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._options import log_options, logs_json, min_area_option, simplify_option

if TYPE_CHECKING:
    from ..vectorize import VectorizeResult


@click.command()
@click.argument("classes", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="GeoPackage to write [default: <stem>.landcover.gpkg beside the raster].",
)
@min_area_option
@simplify_option
@click.option("--workers", type=int, default=None, help="Processes polygonising cells [default: one per core].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@log_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def vectorize(
    classes: Path,
    output: Path | None,
    min_area: float | None,
    simplify: float | None,
    workers: int | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Polygonise CLASSES (uint8 class ids, 255 = nodata) into a styled land-cover GeoPackage.

    Uses the same block-parallel vectorisation, exact seam merge and cleaning
    as `geoseg run`: use it to re-clean a map with other settings, or for a
    class raster made elsewhere.
    """
    from rich.console import Console

    from ..vectorize import vectorize_raster
    from ._progress import JsonProgress, RunProgress, area_table, log_result

    # the sieve's region pass is about a third of the polygonising pass
    events = JsonProgress(shares={"clean": 0.25, "vectorize": 0.75}) if logs_json() else None

    def go(bar: Callable[[str, int, int], None] | None = None) -> VectorizeResult:
        def progress(stage: str, done: int, total: int) -> None:
            if bar:
                bar(stage, done, total)
            if events:
                events.update(stage, done, total)

        res = vectorize_raster(
            classes,
            output,
            min_area=min_area,
            simplify=simplify,
            workers=workers,
            overwrite=overwrite,
            progress=progress if bar or events else None,
        )
        if events:
            events.finish()
            log_result({"landcover": res.path}, polygons=res.n_polygons)
        return res

    if quiet:
        go()
        return
    with RunProgress(classes.name) as bar:
        res = go(bar.update)
    console = Console(stderr=True)
    # The class raster's areas (the map the polygons describe); the polygons' sums are within 0.5 %.
    console.print(area_table(res.class_areas))
    console.print(
        f"{res.n_polygons:,} polygons in {res.timings['total']:.1f} s "
        f"(minimum mapping unit {res.cleaning.min_area_m2:g} m², simplify {res.cleaning.simplify_m:g} m) -> {res.path}"
    )
