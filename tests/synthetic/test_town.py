"""Tests for geoseg.synthetic.town: every cell's objects stay within reach of the cell."""

from __future__ import annotations

import math

from geoseg.synthetic.shapes import _Tree
from geoseg.synthetic.town import _cell_objects
from geoseg.synthetic.world import _REACH, _line, _world


def test_objects_stay_within_reach_of_their_cell() -> None:
    # Windows gather the cells within _REACH metres; an object (or its shadow)
    # reaching further would make windows disagree, rarely and silently.
    for seed in (0, 3, 11):
        world = _world(seed)
        sdx, sdy = world.shadow
        for i in range(-1, 3):
            for j in range(-1, 3):
                u0, u1 = _line(seed, 0, i).pos, _line(seed, 0, i + 1).pos
                v0, v1 = _line(seed, 1, j).pos, _line(seed, 1, j + 1).pos
                for obj in _cell_objects(seed, i, j):
                    points = [(obj.bb[0], obj.bb[2]), (obj.bb[1], obj.bb[3])]
                    if obj.casts:
                        points += [(obj.sb[0], obj.sb[2]), (obj.sb[1], obj.sb[3])]
                    for x, y in points:
                        # Image-frame boxes inflate by up to sqrt(2) under rotation.
                        gu, gv = world.to_grid(x, y)
                        slack = _REACH * math.sqrt(2)
                        assert u0 - slack <= gu <= u1 + slack and v0 - slack <= gv <= v1 + slack
                    if isinstance(obj, _Tree):
                        reach = 1.25 * obj.r + math.hypot(sdx, sdy) * obj.top
                        cx, cy = world.to_grid(obj.cx, obj.cy)
                        assert u0 - _REACH <= cx - reach and cx + reach <= u1 + _REACH
                        assert v0 - _REACH <= cy - reach and cy + reach <= v1 + _REACH
