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
s2                 stage 1, then stage 2 (the shipped network, ``method="metapose"``)
s2-ir              stage 1, stage 2, then :data:`S2_IR_STEPS` steps of the refiner
s2-ablation-*      stage 1, then a stage-2 network trained by the ablation recipe named
                   (``python/train_ablations.py``); read from ``stage2_ablations/NAME.safetensors``
                   (the flat MLP: ``flat-{C}cam.safetensors``, one per camera count)
=================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ABLATION_METHODS", "DEFAULT_METHODS", "METHODS", "NEEDED_FIELDS", "S2_IR_STEPS", "MethodSpec"]

#: Refiner steps after stage 2 in the ``s2-ir`` row.
S2_IR_STEPS = 20

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
    solver: Literal["s1", "ir", "metapose"] = "ir"
    #: the solver's options, as (name, value) pairs
    options: tuple[tuple[str, Any], ...] = ()
    #: a stage-2 ablation's weights: the file name (no suffix) in the ablations folder; "{C}" is
    #: replaced by the camera count
    weights: str | None = None
    #: :meth:`Scene.ablated_views` switches (empty: the file's own evidence)
    ablation: tuple[tuple[str, bool], ...] = ()
    #: AniPose's start: the ground-truth cameras, or those with perturbed extrinsics
    start: Literal["gt", "random"] = "gt"
    color: str = "black"
    style: str = "-"

    def solver_options(self, num_cameras: int, ablations: str | None) -> dict[str, Any]:
        """The options ``solve_batch`` gets for ``num_cameras`` views; an ablation's weights path
        from the folder ``ablations`` (ValueError when that is None)."""
        options = dict(self.options)
        if self.weights is not None:
            if ablations is None:
                raise ValueError(f"methods: {self.name!r} needs the folder of stage-2 ablation weights "
                                 "(stage2_ablations=, --stage2-ablations; python/train_ablations.py makes it)")
            import os

            options["weights"] = os.path.join(ablations, self.weights.format(C=num_cameras) + ".safetensors")
        return options

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
    MethodSpec("s2", "S1+S2", "solver", solver="metapose", color="tab:brown"),
    MethodSpec("s2-ir", f"S1+S2+IR ({S2_IR_STEPS} steps)", "solver", solver="metapose",
               options=(("ir_steps", S2_IR_STEPS),), color="tab:pink"),
    MethodSpec("s2-ablation-fwd", "S2 ablation recipe: reprojection loss", "solver", solver="metapose",
               weights="fwd", color="tab:olive", style="-."),
    MethodSpec("s2-ablation-objective", "S2 ablation: self-supervised (IR objective)", "solver", solver="metapose",
               weights="objective", color="tab:olive", style="-."),
    MethodSpec("s2-ablation-teacher", "S2 ablation: student of IR", "solver", solver="metapose",
               weights="teacher", color="tab:olive", style="-."),
    MethodSpec("s2-ablation-bones", "S2 ablation: bone lengths in and in the loss", "solver", solver="metapose",
               weights="bones", color="tab:olive", style="-."),
    MethodSpec("s2-ablation-flat", "S2 ablation: flat MLP (one per camera count)", "solver", solver="metapose",
               weights="flat-{C}cam", color="tab:olive", style="-."),
)
#: Every method :func:`~metapose_geom.evaluation.evaluate` knows, by name (the one place a method
#: name maps to code).
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}
#: The rows that need trained ablation weights (``stage2_ablations``).
ABLATION_METHODS: tuple[str, ...] = tuple(spec.name for spec in _SPECS if spec.weights is not None)
#: Every method but the ablations.
DEFAULT_METHODS: tuple[str, ...] = tuple(name for name in METHODS if name not in ABLATION_METHODS)
