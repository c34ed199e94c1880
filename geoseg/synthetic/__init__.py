"""Seeded synthetic aerial scenes with exact ISPRS ground truth.

The generator draws a small town on an infinite plane -- a street grid with
sidewalks, markings and parked cars, residential lots with pitched roofs and
gardens, perimeter blocks, commercial buildings with parking lots, parks,
fields and construction sites -- and renders any window of it as an aerial
image (RGB, RGB+NIR or NIR-R-G) together with its label in the six ISPRS
classes (:data:`CLASS_NAMES`).

Everything is a pure function of the seed and of *global* pixel coordinates,
so a scene of any size is rendered window by window, in any order and with
any window size, and the pixels come out byte-identical:

* the layout lives on a coarse grid of street *cells* (about 64 m) in a
  (seeded) rotated frame; the streets run along cell boundaries, decided by
  hashing the line and segment indices, and the content of cell ``(i, j)``
  comes from a random generator seeded by ``(seed, i, j)`` alone;
* a window rasterises only the objects of the cells that can reach it
  (objects, crowns and cast shadows stay within ``_REACH`` metres of their
  cell), painting them in one global order with a height buffer;
* textures and illumination are value noise on lattices of global metric
  coordinates, pixel noise is a hash of the global pixel index, and the
  light optical blur is computed on a one-pixel halo and cropped.

Object sizes are in metres (cars about 4.5 m x 1.8 m, buildings 8-45 m, roads
5.5-14 m, tree crowns 3-11 m) and are converted with ``pixel_size``, so the
same seed shows the same town at 5 cm and at 30 cm, and the town does not
depend on the scene's size either (a larger scene extends a smaller one; only
the optional nodata collar follows the scene edges).

Only arithmetic that is exactly rounded elementwise (``+ - * /``, ``sqrt``,
comparisons, ``floor``) touches per-pixel data, which is what makes windows
agree to the bit. Results are identical across runs, processes and hash
seeds; on another platform, a different C math library could move an object
by an ulp and flip a rare edge pixel. Rendering is thread-safe (each call
owns its buffers; the layout caches hold immutable objects).

The package is cut by concept:

* :mod:`~geoseg.synthetic.spec` -- :class:`SceneSpec`, class names and label ids, band order and scale;
* :mod:`~geoseg.synthetic.palette` -- materials, texture amplitudes and colour palettes;
* :mod:`~geoseg.synthetic.noise` -- hashing, value noise and the seeded draws of the layout;
* :mod:`~geoseg.synthetic.world` -- the street grid's frame, the sun and the grid lines of a seed;
* :mod:`~geoseg.synthetic.shapes` -- the canvas of a window and the objects painted into it;
* :mod:`~geoseg.synthetic.town` -- the content of each street cell and the gathering of a window's objects;
* :mod:`~geoseg.synthetic.render` -- :func:`render_window`;
* :mod:`~geoseg.synthetic.write` -- :func:`write_scene` and :func:`write_copies`.
"""

from __future__ import annotations

from .render import render_window
from .spec import CLASS_NAMES, SceneSpec
from .write import write_copies, write_scene

__all__ = ["CLASS_NAMES", "SceneSpec", "render_window", "write_copies", "write_scene"]
