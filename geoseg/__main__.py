"""``python -m geoseg`` is ``geoseg``."""

from .cli import main

main()
