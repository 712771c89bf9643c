"""Static rigs: C fixed cameras filming one person over F frames ("calibration from people").

- :mod:`~metapose_geom.rig.static`: the static-rig objective (weak cameras whose rotations are
  shared by every frame, per-frame poses, scales and shifts) and its Adam refiner in the compiled
  core: :func:`static_rig_objective`, :func:`refine_static_rig`, :class:`StaticRig`.
"""

from __future__ import annotations

from .static import StaticRig, StaticRigGradient, refine_static_rig, static_rig_objective

__all__ = ["StaticRig", "StaticRigGradient", "refine_static_rig", "static_rig_objective"]
