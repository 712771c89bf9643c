"""Options of the solver's methods: typed, frozen dataclasses that reject unknown names.

Each method of the registry (:mod:`metapose_geom.solver.methods`) names its options type
(:class:`RefineOptions` for ``"s1"`` and ``"ir"``, :class:`MetaPoseOptions` for ``"metapose"``,
:class:`AniPoseOptions` for ``"anipose"``);
:func:`resolve_options` turns what a caller passes (an instance, a mapping of field names, or
None for the defaults) into an instance of that type.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from .._checks import check_bool, check_choice, check_int, check_number

__all__ = ["DTYPE_CHOICES", "INIT_CHOICES", "AniPoseOptions", "MetaPoseOptions", "Options", "RefineOptions",
           "resolve_options"]

T = TypeVar("T")

#: The starts ``RefineOptions.init`` names.
INIT_CHOICES = ("auto", "s1", "factorization", "random")
#: The precisions ``MetaPoseOptions.dtype`` names.
DTYPE_CHOICES = ("float64", "float32")


@dataclass(frozen=True)
class RefineOptions:
    """Options of ``"s1"`` and ``"ir"``. Unknown names are rejected (:meth:`from_mapping`).

    Attributes:
        steps: Adam steps (100 as the original).
        learning_rate, beta1, beta2, epsilon: Adam in the Keras form the original used.
        bone_weight: weight of the bone-length term ``|l/mean(l) - l_ref/mean(l_ref)|``; 0 turns it off.
        bone_reference: (nB,) reference bone lengths in any unit; None uses the skeleton's rest pose.
        history_every: record the objective, pose and cameras every n steps (0: no history).
        init: where ``"ir"`` starts, and what ``"s1"`` (the start alone) returns: ``"auto"``
            (the default) is ``"s1"`` when the views have monocular guesses and
            ``"factorization"`` when they have none; ``"s1"`` is stage 1, the Procrustes of the
            monocular guesses (an error without them); ``"factorization"`` the multi-view affine
            factorisation of the 2D evidence alone (:func:`metapose_geom.factorization.factorize`;
            with two views ambiguous, resolved by the rest pose's bone proportions, with a
            warning); ``"random"`` a random pose and cameras (the original's random-initialisation
            ablation).
        seed: seed of the random initialisation.
    """

    steps: int = 100
    learning_rate: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    bone_weight: float = 0.0
    bone_reference: tuple[float, ...] | None = None
    history_every: int = 0
    init: Literal["auto", "s1", "factorization", "random"] = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        checked = {
            "steps": check_int(self.steps, "steps", 0),
            "history_every": check_int(self.history_every, "history_every", 0),
            "seed": check_int(self.seed, "seed", 0),
            "learning_rate": check_number(self.learning_rate, "learning_rate", 0.0),
            "beta1": check_number(self.beta1, "beta1", 0.0, 1.0, high_open=True),
            "beta2": check_number(self.beta2, "beta2", 0.0, 1.0, high_open=True),
            "epsilon": check_number(self.epsilon, "epsilon", 0.0, low_open=True),
            "bone_weight": check_number(self.bone_weight, "bone_weight", 0.0),
            "init": check_choice(self.init, "init", INIT_CHOICES),
        }
        if self.bone_reference is not None:
            reference = np.asarray(self.bone_reference, dtype=np.float64)
            if reference.ndim != 1 or not np.isfinite(reference).all() or (reference < 0).any() or reference.sum() <= 0:
                raise ValueError("bone_reference: expected (nB,) finite non-negative lengths with a positive sum")
            checked["bone_reference"] = tuple(float(v) for v in reference)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RefineOptions:
        """Options from a mapping; unknown names raise ValueError listing the known ones."""
        return _from_mapping(cls, values)


@dataclass(frozen=True)
class MetaPoseOptions:
    """Options of ``"metapose"`` (stage 2, the learned solver). Unknown names are rejected (:meth:`from_mapping`).

    The network starts where ``"s1"`` stops (``init``), runs its stages, and then, with
    ``ir_steps > 0``, the iterative refiner runs that many Adam steps from the network's answer
    (S2 + IR). The objective is the refiner's without a bone term.

    Attributes:
        weights: a ``.safetensors`` weights file (:mod:`metapose_geom.stage2.weights`), or None
            for the weights shipped with metapose-geom.
        stages: run only the model's first n stages (0 is the start alone); None runs them all.
        ir_steps: Adam steps of the refiner after the network (0: none).
        learning_rate, beta1, beta2, epsilon: that Adam, as :class:`RefineOptions`.
        init, seed: the start, as :class:`RefineOptions` (``"auto"``: stage 1 with monocular
            guesses, else the factorisation of the 2D).
        bone_reference: (nB,) reference bone lengths in any unit, the network's ``bones`` input
            when the model has it; None uses the skeleton's rest pose.
        dtype: ``"float64"`` or ``"float32"``: the precision of the network's dense layers
            (float32 is faster in large batches; the results are float64 either way).
    """

    weights: str | None = None
    stages: int | None = None
    ir_steps: int = 0
    learning_rate: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    init: Literal["auto", "s1", "factorization", "random"] = "auto"
    seed: int = 0
    bone_reference: tuple[float, ...] | None = None
    dtype: Literal["float64", "float32"] = "float64"

    def __post_init__(self) -> None:
        weights = self.weights
        if weights is not None:
            if not isinstance(weights, (str, os.PathLike)) or not os.fspath(weights):
                raise ValueError(f"weights: expected a path to a .safetensors file or None, got {weights!r}")
            weights = os.fspath(weights)
            if not isinstance(weights, str):
                raise ValueError(f"weights: expected a path to a .safetensors file or None, got {self.weights!r}")
        checked = {
            "weights": weights,
            "stages": None if self.stages is None else check_int(self.stages, "stages", 0),
            "ir_steps": check_int(self.ir_steps, "ir_steps", 0),
            "dtype": check_choice(self.dtype, "dtype", DTYPE_CHOICES),
        }
        # the start and the refiner are those of "ir", and RefineOptions checks them (naming the fields)
        refine = RefineOptions(steps=checked["ir_steps"], learning_rate=self.learning_rate, beta1=self.beta1,
                               beta2=self.beta2, epsilon=self.epsilon, bone_reference=self.bone_reference,
                               init=self.init, seed=self.seed)
        for name in ("learning_rate", "beta1", "beta2", "epsilon", "bone_reference", "init", "seed"):
            checked[name] = getattr(refine, name)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_refine", refine)

    @property
    def refine_options(self) -> RefineOptions:
        """The :class:`RefineOptions` of the start and of the refiner after the network
        (``steps = ir_steps``, no bone term, no history)."""
        return self._refine  # type: ignore[attr-defined]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MetaPoseOptions:
        """Options from a mapping; unknown names raise ValueError listing the known ones."""
        return _from_mapping(cls, values)


@dataclass(frozen=True)
class AniPoseOptions:
    """Options of ``"anipose"``. Unknown names are rejected (:meth:`from_mapping`).

    Attributes:
        adjust_cameras: run aniposelib's ``bundle_adjust_iter`` (its defaults) before triangulating;
            False triangulates with the start cameras as given.
        adjust_intrinsics: also refine one focal length (``fx = fy``) and ``k1`` per camera, as
            aniposelib does by default (it then drops ``k2, p1, p2, k3``); False moves the
            extrinsics only.
        seed: seeds aniposelib's point resampling for the call (numpy's global generator, which
            is put back afterwards).
    """

    adjust_cameras: bool = True
    adjust_intrinsics: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "adjust_cameras", check_bool(self.adjust_cameras, "adjust_cameras"))
        object.__setattr__(self, "adjust_intrinsics", check_bool(self.adjust_intrinsics, "adjust_intrinsics"))
        object.__setattr__(self, "seed", check_int(self.seed, "seed", 0))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AniPoseOptions:
        """Options from a mapping; unknown names raise ValueError listing the known ones."""
        return _from_mapping(cls, values)


#: What the solver's functions take as ``options``: the method's options type, a mapping of its
#: field names, or None for its defaults.
Options = RefineOptions | MetaPoseOptions | AniPoseOptions | Mapping[str, Any] | None

_DEFAULTS: dict[type, Any] = {}  # one default instance per options type (frozen, so shared)


def _from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"options: unknown name(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    return cls(**values)


def resolve_options(kind: type[T], options: Any, method: str) -> T:
    """``options`` as an instance of ``kind`` (a frozen dataclass): itself, built from a mapping of
    its field names (unknown names raise), or the defaults for None; ValueError for anything else."""
    if options is None:
        default = _DEFAULTS.get(kind)
        if default is None:
            default = _DEFAULTS[kind] = kind()
        return default
    if isinstance(options, kind):
        return options
    if isinstance(options, Mapping):
        return _from_mapping(kind, options)
    raise ValueError(f"options: method {method!r} takes {kind.__name__}, a mapping of its fields or None, "
                     f"got {type(options).__name__}")
