"""Stage 2: the learned, camera-permutation-equivariant solver (design.md, section 1.3).

- :mod:`~metapose_geom.stage2.config`: :class:`ModelConfig`, the network's shape and inputs;
- the torch model and its training live in :mod:`metapose_geom.nn` (needs torch); inference
  runs without torch here.
"""

from __future__ import annotations

from .config import FORMAT_VERSION, INPUT_NAMES, ModelConfig, parse_spec

__all__ = ["FORMAT_VERSION", "INPUT_NAMES", "ModelConfig", "parse_spec"]
