"""The evaluated methods: the one table that maps a method name to what runs and how it is drawn.

=================  ==========================================================================
method             what it is
=================  ==========================================================================
s1                 stage 1 alone: Procrustes of the monocular guesses
ir                 stage 1, then the iterative refiner (100 Adam steps)
ir-gt-init         IR oracle: stage 1 from perfect monocular guesses (the weak-camera image of
                   the 3D truth, ``Scene.gt_mono3d``), noisy mixtures
ir-gt-mixtures     IR oracle: ground-truth mixtures (``synth.gt_mixtures``) at the exact 2D
                   projections, noisy monocular guesses
ir-weak-labels     IR oracle: ground-truth mixtures at the weak-perspective re-projection of the
                   3D truth (``pose2d_repr``): the evidence a weak-perspective world would give
anipose-gt         aniposelib bundle adjustment + triangulation, from the ground-truth cameras
anipose-random     the same from the ground-truth cameras with perturbed extrinsics (each
                   camera turned 15 degrees about a random axis, its centre moved by 25% of its
                   distance to the subject; seeded)
=================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_METHODS", "METHODS", "NEEDED_FIELDS", "MethodSpec"]

_GROUND_TRUTH = ("pose3d", "cam_rot", "cam_pose3d")
#: The ground-truth fields each kind of method (:attr:`MethodSpec.needs`) reads from the file.
NEEDED_FIELDS: dict[str, tuple[str, ...]] = {
    "solver": _GROUND_TRUTH,
    "oracle": _GROUND_TRUTH + ("cam_intr", "cam_kd", "pose2d_gt"),
    "anipose": _GROUND_TRUTH + ("cam_intr", "cam_kd"),
}


@dataclass(frozen=True)
class MethodSpec:
    """One evaluated method: a solver run on (possibly ablated) views, or AniPose from a start."""

    name: str
    label: str
    kind: Literal["solver", "anipose"]
    solver: Literal["s1", "ir"] = "ir"
    #: :meth:`Scene.ablated_views` switches (empty: the file's own evidence)
    ablation: tuple[tuple[str, bool], ...] = ()
    #: AniPose's start: the ground-truth cameras, or those with perturbed extrinsics
    start: Literal["gt", "random"] = "gt"
    color: str = "black"
    style: str = "-"

    @property
    def needs(self) -> Literal["solver", "oracle", "anipose"]:
        """What the method reads (:data:`NEEDED_FIELDS`): the file's evidence, a rebuilt Scene, or cameras."""
        if self.kind == "anipose":
            return "anipose"
        return "oracle" if self.ablation else "solver"


_SPECS = (
    MethodSpec("s1", "S1", "solver", solver="s1", color="tab:gray"),
    MethodSpec("ir", "S1+IR", "solver", color="tab:red"),
    MethodSpec("ir-gt-init", "IR oracle: GT init", "solver", ablation=(("gt_init", True),),
               color="tab:blue", style="--"),
    MethodSpec("ir-gt-mixtures", "IR oracle: GT mixtures", "solver", ablation=(("gt_mixtures", True),),
               color="tab:purple", style="--"),
    MethodSpec("ir-weak-labels", "IR oracle: GT mixtures at weak labels", "solver",
               ablation=(("gt_mixtures", True), ("weak_labels", True)), color="tab:cyan", style="--"),
    MethodSpec("anipose-gt", "AniPose, GT start", "anipose", start="gt", color="tab:green", style=":"),
    MethodSpec("anipose-random", "AniPose, perturbed start", "anipose", start="random", color="tab:orange",
               style=":"),
)
#: Every method :func:`~metapose_geom.evaluation.evaluate` knows, by name (the one place a method
#: name maps to code).
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}
DEFAULT_METHODS: tuple[str, ...] = tuple(METHODS)
