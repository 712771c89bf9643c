"""Calibration from people: a fixed rig's cameras from the person it filmed.

:func:`calibrate` is the whole job (a :class:`~metapose_geom.io.Capture` in, a
:class:`~metapose_geom.io.Calibration` out); its steps live in the modules here:

- :mod:`~metapose_geom.rig.averaging`: robust rotation averaging on SO(3) (per-frame rotations
  into one per camera);
- :mod:`~metapose_geom.rig.static`: the static-rig objective (weak cameras whose rotations are
  shared by every frame, per-frame poses, scales and shifts) and its Adam refiner in the compiled
  core: :func:`static_rig_objective`, :func:`refine_static_rig`, :class:`StaticRig`;
- :mod:`~metapose_geom.rig.perspective`: perspective cameras from the weak rig and the robust
  bundle adjustment (:func:`bundle_adjust`);
- :mod:`~metapose_geom.rig.pipeline`: the pipeline (:func:`calibrate`, :func:`fit_rig`), the metric
  scale and the floor frame.
"""

from __future__ import annotations

from .averaging import RigRotations, average_rig_rotations, geodesic_median, rotation_angles
from .perspective import BundleResult, bundle_adjust
from .pipeline import RigFit, calibrate, fit_rig
from .static import StaticRig, StaticRigGradient, refine_static_rig, static_rig_objective

__all__ = [
    "BundleResult",
    "RigFit",
    "RigRotations",
    "StaticRig",
    "StaticRigGradient",
    "average_rig_rotations",
    "bundle_adjust",
    "calibrate",
    "fit_rig",
    "geodesic_median",
    "refine_static_rig",
    "rotation_angles",
    "static_rig_objective",
]
