"""Options shared by several commands, defined once so their meaning and help stay the same."""

from __future__ import annotations

import click

min_area_option = click.option(
    "--min-area",
    type=float,
    default=None,
    help="Minimum mapping unit in m²: smaller regions merge into the neighbour they share most edge with "
    "[default: 16 pixels; 0 = keep every region].",
)
simplify_option = click.option(
    "--simplify",
    type=float,
    default=None,
    help="Simplify polygon boundaries by this many metres, keeping shared edges shared "
    "[default: one pixel; 0 = exact pixel edges].",
)
