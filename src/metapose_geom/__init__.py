"""metapose-geom: 3D human pose and uncalibrated cameras from several views (MetaPose)."""

from __future__ import annotations

from . import geometry, metrics
from .geometry import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = ["__version__", "geometry", "get_num_threads", "metrics", "set_num_threads"]
