"""A table of every public kernel and every raw binding: argument names, trailing shapes,
output shapes and a generator of valid inputs.

Shared by test_bad_input.py (one mutation of a valid call at a time) and test_fuzz.py (random
calls, checked against the shape oracle :func:`expected_shapes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import reference as ref
from conftest import camera_args, random_camera, random_mixtures, random_points_in_view, random_rot6d, random_rotations

#: default sizes of the symbolic dimensions
DIMS = {"J": 4, "C": 3, "K": 2, "N": 5}


@dataclass(frozen=True)
class Arg:
    name: str
    trailing: tuple  #: trailing shape: ints, or "J", "C", "K", "N"


@dataclass(frozen=True)
class Signature:
    name: str  #: attribute of the module / of metapose_geom._core
    module: str  #: "geometry", "metrics" or "_core"
    args: tuple[Arg, ...]
    outputs: tuple[tuple, ...]  #: trailing shape of each output
    make: Callable[[np.random.Generator, tuple, dict], list[np.ndarray]]
    single: bool = True  #: one array returned (else a tuple of len(outputs))
    kwargs: dict = field(default_factory=dict)  #: extra keyword arguments (public API)
    extra: tuple = ()  #: extra positional arguments (raw core: scale mode, mirror_fix)

    @property
    def id(self) -> str:
        suffix = "".join(f"-{k}={v}" for k, v in self.kwargs.items()) + "".join(f"-{v}" for v in self.extra)
        return f"{self.module}.{self.name}{suffix}"

    def arg_names(self) -> list[str]:
        return [a.name for a in self.args]

    def shape_of(self, arg: Arg, batch: tuple, dims: dict) -> tuple:
        return tuple(batch) + tuple(dims[d] if isinstance(d, str) else d for d in arg.trailing)

    def resolve(self):
        import metapose_geom

        if self.module == "_core":
            from metapose_geom import _core

            return getattr(_core, self.name)
        return getattr(getattr(metapose_geom, self.module), self.name)

    def call(self, arrays: list) -> Any:
        return self.resolve()(*arrays, *self.extra, **self.kwargs)


def expected_shapes(signature: Signature, arrays: list) -> list[tuple] | None:
    """Output shapes for a call with these arrays, or None when the call must raise
    (wrong ndim or trailing shape, inconsistent dimensions, different leading shapes, zero size)."""
    batch = None
    dims: dict[str, int] = {}
    for arg, array in zip(signature.args, arrays):
        shape = np.shape(array)
        if len(shape) < len(arg.trailing) or 0 in shape:
            return None
        lead = shape[: len(shape) - len(arg.trailing)]
        tail = shape[len(shape) - len(arg.trailing) :]
        if batch is None:
            batch = lead
        elif lead != batch:
            return None
        for want, got in zip(arg.trailing, tail):
            if isinstance(want, str):
                if dims.setdefault(want, got) != got:
                    return None
            elif want != got:
                return None
    return [tuple(batch) + tuple(dims[d] if isinstance(d, str) else d for d in out) for out in signature.outputs]


# --------------------------------------------------------------------------- valid inputs


def _make_rot6d(rng, batch, dims):
    return [random_rot6d(rng, batch)]


def _make_rotation(rng, batch, dims):
    return [random_rotations(rng, batch)]


def _make_rotvec(rng, batch, dims):
    return [rng.normal(size=tuple(batch) + (3,))]


def _make_weak(rng, batch, dims):
    batch = tuple(batch)
    return [
        rng.normal(size=batch + (dims["J"], 3)),
        random_rotations(rng, batch + (dims["C"],)),
        rng.uniform(0.5, 2.0, size=batch + (dims["C"],)),
        rng.normal(size=batch + (dims["C"], 3)),
    ]


def _make_perspective(rng, batch, dims):
    camera = random_camera(rng, batch)
    world, _ = random_points_in_view(rng, camera, dims["N"])
    return [world, *camera_args(camera)]


def _make_undistort(rng, batch, dims):
    camera = random_camera(rng, batch)
    world, _ = random_points_in_view(rng, camera, dims["N"])
    pixels = ref.project_perspective(world, *camera_args(camera))
    return [pixels, camera["intrinsics"], camera["distortion"]]


def _make_mixture(rng, batch, dims):
    return [rng.normal(0.5, 0.3, size=tuple(batch) + (2,)), random_mixtures(rng, batch, dims["K"])]


def _make_pair(rng, batch, dims, count_key):
    batch = tuple(batch)
    target = rng.normal(size=batch + (dims[count_key], 3)) * 200.0
    source = rng.uniform(0.5, 2.0, size=batch + (1, 1)) * target @ random_rotations(rng, batch)
    return [source + rng.normal(size=source.shape) * 10.0, target]


def _make_procrustes(rng, batch, dims):
    return _make_pair(rng, batch, dims, "N")


def _make_metric(rng, batch, dims):
    return _make_pair(rng, batch, dims, "J")


# --------------------------------------------------------------------------- the table

A_ROT6D = (Arg("rot6d", (6,)),)
A_ROTATION = (Arg("rotation", (3, 3)),)
A_ROTVEC = (Arg("rotvec", (3,)),)
A_WEAK = (Arg("pose", ("J", 3)), Arg("rotation", ("C", 3, 3)), Arg("scale", ("C",)), Arg("shift", ("C", 3)))
A_PERSPECTIVE = (
    Arg("points", ("N", 3)),
    Arg("rotation", (3, 3)),
    Arg("translation", (3,)),
    Arg("intrinsics", (4,)),
    Arg("distortion", (5,)),
)
A_UNDISTORT = (Arg("pixels", ("N", 2)), Arg("intrinsics", (4,)), Arg("distortion", (5,)))
A_MIXTURE = (Arg("points", (2,)), Arg("mixtures", ("K", 4)))
A_PROCRUSTES = (Arg("source", ("N", 3)), Arg("target", ("N", 3)))
A_METRIC = (Arg("prediction", ("J", 3)), Arg("ground_truth", ("J", 3)))

WEAK_OUT = (("C", "J", 2), ("C", "J", 2, 3), ("C", "J", 2, 3, 3), ("C", "J", 2), ("C", "J", 2, 3))
SIMILARITY_OUT = ((3, 3), (), (3,))


def _kernels(module: str) -> list[Signature]:
    """The geometry kernels: the same names and positional arrays in the wrapper and the core."""
    return [
        Signature("rot6d_to_matrix", module, A_ROT6D, ((3, 3),), _make_rot6d),
        Signature("rot6d_to_matrix_with_jacobian", module, A_ROT6D, ((3, 3), (3, 3, 6)), _make_rot6d, single=False),
        Signature("matrix_to_rot6d", module, A_ROTATION, ((6,),), _make_rotation),
        Signature("rodrigues_to_matrix", module, A_ROTVEC, ((3, 3),), _make_rotvec),
        Signature("matrix_to_rodrigues", module, A_ROTATION, ((3,),), _make_rotation),
        Signature("project_weak", module, A_WEAK, (WEAK_OUT[0],), _make_weak),
        Signature("project_weak_with_jacobian", module, A_WEAK, WEAK_OUT, _make_weak, single=False),
        Signature("project_perspective", module, A_PERSPECTIVE, (("N", 2),), _make_perspective),
        Signature(
            "project_perspective_with_jacobian",
            module,
            A_PERSPECTIVE,
            (("N", 2), ("N", 2, 3)),
            _make_perspective,
            single=False,
        ),
        Signature("undistort_points", module, A_UNDISTORT, (("N", 2),), _make_undistort),
        Signature("mixture_log_likelihood", module, A_MIXTURE, ((),), _make_mixture),
        Signature("mixture_log_likelihood_with_gradient", module, A_MIXTURE, ((), (2,)), _make_mixture, single=False),
    ]


PUBLIC: list[Signature] = _kernels("geometry") + [
    Signature("procrustes", "geometry", A_PROCRUSTES, SIMILARITY_OUT, _make_procrustes, single=False,
              kwargs={"scale": "umeyama"}),
    Signature("procrustes", "geometry", A_PROCRUSTES, SIMILARITY_OUT, _make_procrustes, single=False,
              kwargs={"scale": "norm_ratio"}),
    Signature("pmpjpe", "metrics", A_METRIC, ((),), _make_metric),
    Signature("pmpjpe", "metrics", A_METRIC, (("J",),), _make_metric, kwargs={"scale": "umeyama", "per_joint": True}),
    Signature("nmpjpe", "metrics", A_METRIC, ((),), _make_metric),
    Signature("nmpjpe", "metrics", A_METRIC, (("J",),), _make_metric, kwargs={"mirror_fix": True, "per_joint": True}),
    Signature("pck", "metrics", A_METRIC, ((),), _make_metric),
    Signature("pck", "metrics", A_METRIC, ((),), _make_metric, kwargs={"threshold": 50.0, "mirror_fix": True}),
]

CORE: list[Signature] = _kernels("_core") + [
    Signature("procrustes", "_core", A_PROCRUSTES, SIMILARITY_OUT, _make_procrustes, single=False, extra=(0,)),
    Signature("procrustes", "_core", A_PROCRUSTES, SIMILARITY_OUT, _make_procrustes, single=False, extra=(1,)),
    Signature("pmpjpe_per_joint", "_core", A_METRIC, (("J",),), _make_metric, extra=(0,)),
    Signature("pmpjpe_per_joint", "_core", A_METRIC, (("J",),), _make_metric, extra=(1,)),
    Signature("nmpjpe_per_joint", "_core", A_METRIC, (("J",),), _make_metric, extra=(False,)),
    Signature("nmpjpe_per_joint", "_core", A_METRIC, (("J",),), _make_metric, extra=(True,)),
]


def as_outputs(signature: Signature, result: Any) -> list:
    """The call's outputs as a list (one entry per ``signature.outputs``)."""
    if signature.single:
        return [result]
    return list(result)
