"""The stage-2 network's configuration: what it reads, how it is built, and how it is written down.

Stage 2 (design.md, section 1.3) refines a solution vector ``x`` (:mod:`metapose_geom.layout`) by
a few learned steps, ``x_{i+1} = x_i + f_i(inputs(x_i))``. This module holds only plain data (no
torch, no numpy arrays), shared by the torch model (:mod:`metapose_geom.nn.model`), the numpy
inference (:mod:`metapose_geom.stage2.forward`) and the weights files
(:mod:`metapose_geom.stage2.weights`), so that the three agree by construction.

The inputs of stage i for a frame of C cameras, J joints and K components (``inputs`` names which
are used, in this order; ``shared`` parts are the same for every camera, ``camera`` parts are each
camera's own):

===========  ========  ==========  ==========================================================
name         part      width       what
===========  ========  ==========  ==========================================================
pose         shared    3 J         the pose of ``x_i`` (box units)
objective    shared    1           the refiner objective at ``x_i`` (no bone term)
step         shared    1           the stage index i
bones        shared    nB          the reference bone lengths over their mean (the skeleton's
                                   rest pose unless given)
camera       camera    10          ``[rot6d (6), scale_raw (1), shift (3)]`` of the camera
mixtures     camera    4 J K       per joint and component ``[weight, mu_x, mu_y, log variance]``
projections  camera    2 J         the camera's weak projections of the pose of ``x_i``
===========  ========  ==========  ==========================================================

Each part is standardised by a per-feature mean and standard deviation that training measures on
its data and the weights file stores (``shared_mean``, ``shared_std``, ``camera_mean``,
``camera_std``). An ``"equivariant"`` stage runs every camera's row ``[shared | camera]`` through
the layers of ``spec``: an integer n is a dense layer of width n followed by selu; ``"ccat"``
appends to each row the mean and the standard deviation over cameras of the rows (width x 3);
``"cn"`` subtracts that mean and divides by that standard deviation. A dense layer (no
activation) maps each final row to that camera's update (10, the ``camera`` part's layout); the
rows' mean over cameras goes through the dense + selu layers of ``pose_head`` and a last dense
layer to the pose update (3 J). So the pose update is invariant and the camera updates are
equivariant under any permutation of the cameras, and one set of weights serves any camera count.
A ``"flat"`` stage (the non-equivariant ablation) is a plain MLP on ``[shared | camera_0 | ... |
camera_{C-1}]`` for its fixed ``num_cameras``; ``spec`` may hold only integers there, and the
pose and camera updates come out of the same two heads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._checks import check_choice, check_int

__all__ = [
    "CAMERA_INPUTS", "CONTEXT_BLOCKS", "FORMAT_NAME", "FORMAT_VERSION", "INPUT_NAMES", "KINDS", "SHARED_INPUTS",
    "STD_EPSILON", "ModelConfig", "parse_spec",
]

FORMAT_NAME = "metapose-geom-stage2"
#: The version of the weights format and of the meaning of every field of :class:`ModelConfig`.
FORMAT_VERSION = 1
SHARED_INPUTS = ("pose", "objective", "step", "bones")
CAMERA_INPUTS = ("camera", "mixtures", "projections")
INPUT_NAMES = SHARED_INPUTS + CAMERA_INPUTS
DEFAULT_INPUTS = ("pose", "objective", "step", "camera", "mixtures", "projections")
CONTEXT_BLOCKS = ("ccat", "cn")
KINDS = ("equivariant", "flat")
#: Added to the variance over cameras before its square root, in "ccat" and "cn" (and to the
#: squared input standard deviations nowhere: those are stored as measured, floored at 1e-6).
STD_EPSILON = 1e-6
#: width of the camera part of the solution (rot6d 6, scale_raw 1, shift 3)
CAMERA_WIDTH = 10


def parse_spec(spec: str, kind: str = "equivariant") -> tuple[int | str, ...]:
    """``"256,256,ccat,256"`` -> ``(256, 256, "ccat", 256)``; ValueError naming the bad entry.

    The spec must start with a dense layer; a flat stage takes dense layers only.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec: expected a comma-separated string such as '256,256,ccat,256', got {spec!r}")
    layers: list[int | str] = []
    for raw in spec.split(","):
        item = raw.strip().lower()
        if item in CONTEXT_BLOCKS:
            if kind == "flat":
                raise ValueError(f"spec: {item!r} is a context block over cameras; a flat stage takes widths only")
            if not layers:
                raise ValueError(f"spec: must start with a dense layer width, got {item!r} first")
            layers.append(item)
        elif item.isdigit() and 0 < int(item) <= 65536:
            layers.append(int(item))
        else:
            raise ValueError(f"spec: expected widths (1..65536) and 'ccat' / 'cn' blocks, got {raw.strip()!r}")
    return tuple(layers)


@functools.lru_cache(maxsize=64)
def _parsed(spec: str, kind: str) -> tuple[int | str, ...]:
    return parse_spec(spec, kind)


def _tuple_of_ints(values: Any, name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}: expected a sequence of widths, got {values!r}")
    return tuple(check_int(v, f"{name}[{i}]", 1, 65536) for i, v in enumerate(values))


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a stage-2 network (everything but its weights); validated, JSON-able.

    Attributes:
        num_joints: J. num_components: K (the mixtures' components per joint).
        skeleton: the skeleton name the joints follow (``bones`` input and checks).
        num_bones: nB, the skeleton's bone count (width of the ``bones`` input).
        num_stages: how many steps ``f_0 .. f_{n-1}`` (each with its own weights).
        kind: ``"equivariant"`` (any camera count) or ``"flat"`` (only ``num_cameras``).
        spec: the per-row layers (see the module docstring).
        pose_head: widths of the pose MLP after the mean over cameras.
        inputs: the input parts used, a subset of :data:`INPUT_NAMES` (kept in that order).
        num_cameras: the camera count of a flat model; None for an equivariant one.
    """

    num_joints: int = 17
    num_components: int = 4
    skeleton: str = "h36m17"
    num_bones: int = 16
    num_stages: int = 1
    kind: Literal["equivariant", "flat"] = "equivariant"
    spec: str = "256,256,ccat,256,256,ccat,256"
    pose_head: tuple[int, ...] = (256, 128)
    inputs: tuple[str, ...] = DEFAULT_INPUTS
    num_cameras: int | None = None
    #: free-form notes kept with the config (the training recipe); not part of the shape
    notes: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("num_joints", check_int(self.num_joints, "num_joints", 1))
        set_("num_components", check_int(self.num_components, "num_components", 1))
        set_("num_bones", check_int(self.num_bones, "num_bones", 0))
        set_("num_stages", check_int(self.num_stages, "num_stages", 0, 64))
        set_("kind", check_choice(self.kind, "kind", KINDS))
        if not isinstance(self.skeleton, str) or not self.skeleton:
            raise ValueError(f"skeleton: expected a skeleton name, got {self.skeleton!r}")
        parse_spec(self.spec, self.kind)
        set_("pose_head", _tuple_of_ints(self.pose_head, "pose_head"))
        inputs = self.inputs
        if isinstance(inputs, str) or not hasattr(inputs, "__iter__"):
            raise ValueError(f"inputs: expected a sequence of names from {INPUT_NAMES}, got {inputs!r}")
        inputs = tuple(inputs)
        for name in inputs:
            check_choice(name, "inputs", INPUT_NAMES)
        if len(set(inputs)) != len(inputs):
            raise ValueError(f"inputs: a name is repeated in {inputs}")
        if not any(name in CAMERA_INPUTS for name in inputs):
            raise ValueError(f"inputs: at least one camera input {CAMERA_INPUTS} is needed, got {inputs}")
        set_("inputs", tuple(name for name in INPUT_NAMES if name in inputs))
        if self.kind == "flat":
            set_("num_cameras", check_int(self.num_cameras, "num_cameras", 1, 64))
        elif self.num_cameras is not None:
            raise ValueError("num_cameras: only a flat model has a fixed camera count; leave it None")
        if not isinstance(self.notes, Mapping):
            raise ValueError(f"notes: expected a mapping, got {type(self.notes).__name__}")
        set_("notes", dict(self.notes))

    # ------------------------------------------------------------------ widths

    @property
    def layers(self) -> tuple[int | str, ...]:
        """:func:`parse_spec` of ``spec`` (parsed once per spec: inference asks on every call)."""
        return _parsed(self.spec, self.kind)

    def input_width(self, name: str) -> int:
        """Width of one input part (see the module docstring)."""
        J, K = self.num_joints, self.num_components
        return {"pose": 3 * J, "objective": 1, "step": 1, "bones": self.num_bones, "camera": CAMERA_WIDTH,
                "mixtures": 4 * J * K, "projections": 2 * J}[check_choice(name, "name", INPUT_NAMES)]

    @property
    def shared_width(self) -> int:
        """Width of the shared part of a row."""
        return sum(self.input_width(n) for n in self.inputs if n in SHARED_INPUTS)

    @property
    def camera_width(self) -> int:
        """Width of one camera's part of a row."""
        return sum(self.input_width(n) for n in self.inputs if n in CAMERA_INPUTS)

    @property
    def pose_width(self) -> int:
        """3 J, the pose update's width."""
        return 3 * self.num_joints

    def check_cameras(self, num_cameras: int) -> None:
        """ValueError unless the model runs on ``num_cameras`` views (a flat model: only its own)."""
        if self.kind == "flat" and num_cameras != self.num_cameras:
            raise ValueError(f"mixtures: this flat stage-2 model takes {self.num_cameras} cameras, got {num_cameras}; "
                             "an equivariant model takes any count")

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (:meth:`from_dict` reads it back equal)."""
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "num_joints": self.num_joints,
                "num_components": self.num_components, "skeleton": self.skeleton, "num_bones": self.num_bones,
                "num_stages": self.num_stages, "kind": self.kind, "spec": self.spec,
                "pose_head": list(self.pose_head), "inputs": list(self.inputs), "num_cameras": self.num_cameras,
                "notes": dict(self.notes)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> ModelConfig:
        """The config of :meth:`to_dict`; ValueError naming ``source`` and the field for anything else
        (another format, another version, unknown or missing fields, bad values)."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(values).__name__}")
        if values.get("format") != FORMAT_NAME:
            raise ValueError(f"{source}: not a stage-2 config (format {values.get('format')!r}, expected {FORMAT_NAME!r})")
        version = values.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{source}: format_version {version!r} is not supported (this metapose-geom reads "
                             f"version {FORMAT_VERSION}); retrain, or install the metapose-geom that wrote it")
        known = {"num_joints", "num_components", "skeleton", "num_bones", "num_stages", "kind", "spec", "pose_head",
                 "inputs", "num_cameras", "notes"}
        fields = {k: v for k, v in values.items() if k not in ("format", "format_version")}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}")
        try:
            return cls(**fields)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> ModelConfig:
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, absurd nesting or integers
            raise ValueError(f"{source}: not valid JSON ({error})") from None
        return cls.from_dict(values, source)
