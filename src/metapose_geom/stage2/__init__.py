"""Stage 2: the learned, camera-permutation-equivariant solver (design.md, section 1.3).

- :mod:`~metapose_geom.stage2.config`: :class:`ModelConfig`, the network's shape and inputs;
- :mod:`~metapose_geom.stage2.weights`: the weights files (safetensors, a hashed JSON config);
- :mod:`~metapose_geom.stage2.forward`: :class:`~metapose_geom.stage2.forward.Stage2Network`,
  numpy inference without torch (what ``solve(views, method="metapose")`` runs);
- the torch model and its training live in :mod:`metapose_geom.nn` (needs torch).
"""

from __future__ import annotations

from .config import FORMAT_VERSION, INPUT_NAMES, ModelConfig, parse_spec

__all__ = ["FORMAT_VERSION", "INPUT_NAMES", "ModelConfig", "parse_spec"]
