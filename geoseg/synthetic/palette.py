"""How the synthetic town looks: surface materials and colour palettes.

Each material has amplitudes for the texture noise fields (fine, medium,
coarse and leaf, on the lattice spacings of :data:`_NOISE_SCALES`) that
:mod:`geoseg.synthetic.render` multiplies into its pixels together with a
broad illumination field; shadows darken each channel by :data:`_SHADOW`.
The palettes are display reflectances 0..1 for (R, G, B, NIR), from which
objects draw their colours with a seeded jitter
(:meth:`geoseg.synthetic.noise._Rng.colour`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "_ASPHALT",
    "_CARS",
    "_CARS_W",
    "_CONTAINERS",
    "_FIELD_GREEN",
    "_FIELD_YELLOW",
    "_GLASS",
    "_GRAVEL_PATH",
    "_HEDGE",
    "_ILLUM_SCALE",
    "_LAWN",
    "_LAWN_DRY",
    "_MARKING",
    "_METAL",
    "_M_ASPHALT",
    "_M_CAR",
    "_M_DEBRIS",
    "_M_FIELD",
    "_M_FLAT",
    "_M_GRASS",
    "_M_GRAVEL",
    "_M_HEDGE",
    "_M_MARKING",
    "_M_METAL",
    "_M_PAVING",
    "_M_SOIL",
    "_M_TILE",
    "_M_TREE",
    "_M_WATER",
    "_NOISE_SCALES",
    "_PAVING",
    "_POOL",
    "_ROOF_FLAT",
    "_ROOF_FLAT_W",
    "_ROOF_PITCHED",
    "_ROOF_PITCHED_W",
    "_SHADOW",
    "_SOIL",
    "_TEXTURE_COLUMNS",
    "_TREES",
    "_TREE_W",
    "_WATER",
    "_Colour",
]

# Materials: per-material amplitudes of the texture noise fields.
(
    _M_GRASS,
    _M_FIELD,
    _M_ASPHALT,
    _M_PAVING,
    _M_MARKING,
    _M_TILE,
    _M_FLAT,
    _M_GRAVEL,
    _M_CAR,
    _M_TREE,
    _M_HEDGE,
    _M_SOIL,
    _M_DEBRIS,
    _M_WATER,
    _M_METAL,
) = range(15)
#                       fine   medium coarse leaf
_TEXTURE = np.array(
    [
        [0.10, 0.16, 0.12, 0.22],  # grass
        [0.08, 0.10, 0.14, 0.12],  # field
        [0.16, 0.06, 0.12, 0.00],  # asphalt
        [0.10, 0.06, 0.08, 0.00],  # paving / concrete
        [0.05, 0.04, 0.05, 0.00],  # marking
        [0.08, 0.05, 0.07, 0.00],  # tiles
        [0.07, 0.09, 0.12, 0.00],  # flat roof
        [0.24, 0.08, 0.08, 0.00],  # gravel
        [0.03, 0.00, 0.00, 0.00],  # car paint
        [0.14, 0.10, 0.06, 0.85],  # tree crown
        [0.12, 0.06, 0.00, 0.60],  # hedge
        [0.20, 0.22, 0.16, 0.06],  # soil
        [0.26, 0.16, 0.06, 0.20],  # debris
        [0.02, 0.05, 0.06, 0.00],  # water
        [0.04, 0.02, 0.00, 0.00],  # metal
    ],
    dtype=np.float32,
)
_TEXTURE_COLUMNS = tuple(np.ascontiguousarray(_TEXTURE[:, k]) for k in range(4))
# Darkening of shadowed pixels per channel (R, G, B, NIR); skylight is bluish.
_SHADOW = np.array([0.42, 0.46, 0.58, 0.38], dtype=np.float32)
_NOISE_SCALES = (
    0.12,
    1.0,
    5.0,
    0.45,
    0.71,
)  # fine, medium, coarse, leaf, leaf2 lattice spacing (m)
_ILLUM_SCALE = 90.0

# ---------------------------------------------------------------------------
# Palettes: display reflectance 0..1 for (R, G, B, NIR)
# ---------------------------------------------------------------------------
_Colour = tuple[float, float, float, float]
_LAWN = (0.30, 0.42, 0.17, 0.62)
_LAWN_DRY = (0.52, 0.50, 0.31, 0.46)
_FIELD_GREEN = (0.36, 0.46, 0.22, 0.60)
_FIELD_YELLOW = (0.64, 0.57, 0.35, 0.45)
_TREES: tuple[_Colour, ...] = (
    (0.17, 0.27, 0.11, 0.55),
    (0.22, 0.32, 0.13, 0.60),
    (0.27, 0.34, 0.16, 0.52),
    (0.16, 0.21, 0.12, 0.44),
    (0.42, 0.36, 0.16, 0.45),
)
_TREE_W = (0.32, 0.3, 0.2, 0.14, 0.04)
_HEDGE = (0.19, 0.30, 0.12, 0.55)
_ASPHALT: tuple[_Colour, ...] = (
    (0.36, 0.37, 0.38, 0.33),
    (0.47, 0.47, 0.46, 0.42),
    (0.26, 0.27, 0.29, 0.24),
)
_PAVING: tuple[_Colour, ...] = (
    (0.62, 0.60, 0.57, 0.55),
    (0.52, 0.51, 0.50, 0.47),
    (0.56, 0.42, 0.36, 0.46),
)
_GRAVEL_PATH = (0.62, 0.57, 0.48, 0.52)
_MARKING = (0.86, 0.86, 0.84, 0.78)
_ROOF_PITCHED: tuple[_Colour, ...] = (
    (0.62, 0.30, 0.22, 0.45),  # red tiles
    (0.72, 0.42, 0.28, 0.50),  # terracotta
    (0.45, 0.31, 0.25, 0.38),  # brown
    (0.42, 0.42, 0.43, 0.38),  # grey, like asphalt
    (0.20, 0.21, 0.23, 0.20),  # dark slate
    (0.30, 0.38, 0.22, 0.45),  # mossy green, rare
)
_ROOF_PITCHED_W = (0.36, 0.12, 0.12, 0.19, 0.19, 0.02)
_ROOF_FLAT: tuple[_Colour, ...] = (
    (0.43, 0.43, 0.44, 0.40),  # grey concrete
    (0.70, 0.69, 0.66, 0.62),  # light membrane
    (0.24, 0.24, 0.26, 0.22),  # dark
    (0.55, 0.52, 0.46, 0.50),  # gravel
    (0.15, 0.15, 0.16, 0.14),  # bitumen
    (0.31, 0.41, 0.20, 0.58),  # green roof, rare
)
_ROOF_FLAT_W = (0.3, 0.2, 0.2, 0.15, 0.1, 0.05)
_CARS: tuple[_Colour, ...] = (
    (0.86, 0.86, 0.87, 0.80),
    (0.66, 0.67, 0.69, 0.62),
    (0.44, 0.45, 0.47, 0.40),
    (0.09, 0.09, 0.10, 0.10),
    (0.12, 0.16, 0.32, 0.20),
    (0.60, 0.11, 0.10, 0.45),
    (0.16, 0.30, 0.19, 0.30),
    (0.85, 0.74, 0.20, 0.70),
    (0.68, 0.63, 0.50, 0.60),
)
_CARS_W = (0.2, 0.18, 0.15, 0.17, 0.1, 0.1, 0.04, 0.02, 0.04)
_SOIL: tuple[_Colour, ...] = (
    (0.46, 0.37, 0.27, 0.40),
    (0.33, 0.27, 0.21, 0.31),
    (0.72, 0.65, 0.50, 0.62),
)
_WATER = (0.12, 0.19, 0.20, 0.05)
_POOL = (0.36, 0.70, 0.80, 0.10)
_CONTAINERS: tuple[_Colour, ...] = (
    (0.15, 0.30, 0.55, 0.30),
    (0.20, 0.40, 0.25, 0.30),
    (0.60, 0.16, 0.12, 0.45),
    (0.80, 0.70, 0.16, 0.60),
    (0.50, 0.31, 0.20, 0.40),
    (0.50, 0.50, 0.52, 0.45),
)
_METAL = (0.68, 0.69, 0.70, 0.62)
_GLASS = (0.14, 0.16, 0.20, 0.12)
