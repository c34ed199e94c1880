"""Models and inference: with `geoseg.training`, the only part of geoseg that imports torch.

Import the submodules you need; ``import geoseg.predict`` alone does not load torch::

    from geoseg.predict.checkpoint import init_checkpoint, read_spec
    from geoseg.predict.engine import get_predictor
"""

from __future__ import annotations

from .spec import ARCHITECTURES, ENCODERS, ModelSpec

__all__ = ["ARCHITECTURES", "ENCODERS", "ModelSpec"]
