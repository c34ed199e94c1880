"""Run a scene through the stages: prepare → segment → vectorize → export → report.

:func:`run` chains the steps of :mod:`geoseg.pipeline.steps`; each takes and
returns small frozen records, so the steps of many scenes can be scheduled
side by side or on different workers. Segmentation is one Dask graph over the
scene's blocks (:mod:`geoseg.pipeline.blocks`), run on the configured
scheduler (:mod:`geoseg.pipeline.scheduler`). The vector stage streams over
cells of the stored class raster (:mod:`geoseg.vectorize.cells`); last the
class COG is written from the store (:mod:`geoseg.export`).
"""

from .._parallel import ProgressCallback
from .steps import (
    Exported,
    Prepared,
    RunResult,
    Segmented,
    Vectorized,
    export,
    output_paths,
    prepare,
    report,
    run,
    segment,
    vectorize,
)

__all__ = [
    "Exported",
    "Prepared",
    "ProgressCallback",
    "RunResult",
    "Segmented",
    "Vectorized",
    "export",
    "output_paths",
    "prepare",
    "report",
    "run",
    "segment",
    "vectorize",
]
