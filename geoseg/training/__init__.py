"""Training and scoring models on labelled imagery: ``geoseg train`` and ``geoseg evaluate``.

Import the submodules you need; ``import geoseg.training`` alone loads
nothing heavy, and only :mod:`~geoseg.training.fit` imports torch::

    from geoseg.training.train import TrainConfig, train        # settings and data -> checkpoint
    from geoseg.training.evaluate import evaluate               # checkpoint -> ISPRS scores
    from geoseg.training.metrics import ConfusionMatrix         # scores of class rasters
    from geoseg.training import datasets                        # labelled samples and windows

:mod:`~geoseg.training.fit` is the optimisation loop (torch);
:mod:`~geoseg.training.train` assembles its data and model description.
"""

from __future__ import annotations

__all__: list[str] = []
