"""Stage 2 in numpy, without torch: the computation of :mod:`metapose_geom.nn.model`, for inference.

:class:`Stage2Network` holds a model's config and weights (from :func:`~metapose_geom.stage2.weights.load_weights`)
and runs ``x_{i+1} = x_i + f_i(inputs(x_i))`` on B frames at once. The inputs, their
standardisation, the layers and the heads are exactly those of the torch model (read
:mod:`metapose_geom.stage2.config`); the projections, the refiner objective (without its bone
term) and the dense layers come from the compiled core, the rest is numpy.

How it is arranged for speed, without changing what is computed:

- the dense layers run in the compiled core (``_core.dense``, ``cpp/include/metapose/dense.hpp``),
  with the selu fused in: every output value is one chain of multiply-adds over the input index
  in a fixed order, vectorised across the outputs and blocked over rows, with no sum whose order
  depends on the batch, so a frame's result is the same bits alone, in any batch and on any
  thread count, as the refiner's are. Small products (one frame's 4 camera rows) run at the
  speed of a large BLAS product, which a BLAS does not reach with few rows;
- every frame's C camera rows are one matrix (B C, D), and a batch of at least two
  :data:`FRAMES_PER_THREAD` frames is split into contiguous parts on the core's threads, each
  part's dense layers on its own thread (a smaller batch splits its large layers' rows instead);
- the first layer's input ``[shared | camera]`` is never built: the shared part goes through its
  columns of the weight once per frame (B rows, not B C) and that row is the bias of the frame's
  C camera rows (``_core.dense`` takes one bias row per group of rows); a dense layer right after
  ``"ccat"`` does the same with the mean and standard deviation over cameras, so
  ``[h | mean | std]`` is never built either;
- the mixture features are made once per call, the weights are transposed and split once at load.

``dtype=np.float32`` runs the dense layers (and ccat / cn, selu) in float32 for speed (half the
weight bytes to read, twice the values per vector); the inputs are made and standardised in
float64 and the updates added to x in float64. :func:`selu` is the numpy reference of the core's
selu (the same values: both use the C library's ``expm1``).
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .. import layout
from .._checks import check_int
from .._core_loader import core as _core
from .config import CAMERA_WIDTH, SHARED_INPUTS, STD_EPSILON, ModelConfig
from .weights import expected_shapes, load_weights

F64 = NDArray[np.float64]

__all__ = ["DEFAULT_WEIGHTS_PACKAGE", "SELU_ALPHA", "SELU_SCALE", "MissingWeightsError", "Stage2Network", "selu"]

#: torch's selu constants (``torch.nn.SELU``; Klambauer et al. 2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SELU_NEGATIVE = SELU_ALPHA * SELU_SCALE

#: The package whose resources ``default.safetensors`` / ``default.json`` are the shipped model.
DEFAULT_WEIGHTS_PACKAGE = "metapose_geom.weights"
DEFAULT_WEIGHTS_FILE = "default.safetensors"

_DTYPES = {np.dtype(np.float64): np.float64, np.dtype(np.float32): np.float32}
#: A batch runs on up to the core's thread count (:func:`metapose_geom.set_num_threads`), in
#: contiguous parts of at least this many frames.
FRAMES_PER_THREAD = 64


class MissingWeightsError(FileNotFoundError, ValueError):
    """No weights file where one was asked for (no shipped default yet, or a path that does not
    exist); a ValueError as well, like every bad argument of the solver."""


def selu(values: NDArray) -> NDArray:
    """(...) -> (...): ``scale * x`` for x > 0, ``scale * alpha * (exp(x) - 1)`` otherwise, with
    torch's constants, in place on ``values`` (which it returns)."""
    negative = np.minimum(values, 0.0)
    np.expm1(negative, out=negative)
    negative *= _SELU_NEGATIVE
    np.maximum(values, 0.0, out=values)
    values *= SELU_SCALE
    values += negative
    return values


def _layer(rows: NDArray, weight: NDArray, bias: NDArray, activation: str = "none", threads: int | None = None
           ) -> NDArray:
    """activation(rows (M, I) @ weight (I, O) + bias) -> (M, O), in the compiled core
    (``_core.dense``, on ``threads`` threads, None for the core's count): ``bias`` is (O,), or
    (G, O) for one bias row per group of M / G consecutive rows (a frame's C camera rows take their
    frame's row). Every value is one multiply-add chain over the input index in a fixed order, so
    a row's bits do not depend on M, on the other rows or on the threads."""
    return _core.dense(np.ascontiguousarray(rows), weight, bias, activation, threads)


def _context_stats(rows: NDArray) -> tuple[NDArray, NDArray]:
    """rows (B, C, D) -> mean and standard deviation over cameras (B, 1, D) each, as
    :func:`metapose_geom.nn.model.context_stats`: ``sqrt(mean((h - mean)^2) + STD_EPSILON)``."""
    mean = rows.mean(axis=1, keepdims=True)
    centred = rows - mean
    centred *= centred
    variance = centred.mean(axis=1, keepdims=True)
    variance += STD_EPSILON
    return mean, np.sqrt(variance, out=variance)


# --------------------------------------------------------------------------- weights, arranged once


@dataclass(frozen=True)
class _Dense:
    """A dense layer ``h @ weight + bias`` in one dtype, its weight (in, out) C-contiguous; or, with
    ``blocks`` (then ``weight`` is None), the weight's rows split into consecutive parts (the
    shared and camera columns of the first layer, or a row and its ccat mean and std) whose
    products are summed."""

    weight: NDArray | None
    bias: NDArray
    blocks: tuple[NDArray, ...] = ()


@dataclass(frozen=True)
class _StageArrays:
    """One stage's arrays in one dtype."""

    trunk: tuple[_Dense, ...]
    camera_head: _Dense
    pose_head: tuple[_Dense, ...]


def _dense(tensors: Mapping[str, NDArray], name: str, dtype: type, splits: tuple[int, ...] = ()) -> _Dense:
    weight = np.ascontiguousarray(np.asarray(tensors[name + ".weight"], dtype=np.float64).T, dtype=dtype)
    bias = np.ascontiguousarray(tensors[name + ".bias"], dtype=dtype)
    blocks: tuple[NDArray, ...] = ()
    if splits:
        edges = np.cumsum((0, *splits))
        blocks = tuple(np.ascontiguousarray(weight[a:b]) for a, b in zip(edges[:-1], edges[1:]))
        return _Dense(None, bias, blocks)
    return _Dense(weight, bias)


def _stage_arrays(config: ModelConfig, tensors: Mapping[str, NDArray], stage: int, dtype: type) -> _StageArrays:
    prefix = f"stages.{stage}."
    layers = config.layers
    flat = config.kind == "flat"
    width = config.shared_width + (config.num_cameras if flat else 1) * config.camera_width
    trunk: list[_Dense] = []
    for position, item in enumerate(layers):
        if item == "ccat":
            width *= 3
        elif isinstance(item, int):
            splits: tuple[int, ...] = ()
            if position == 0 and not flat:
                splits = (config.shared_width, config.camera_width)
            elif position > 0 and layers[position - 1] == "ccat":
                splits = (width // 3,) * 3
            trunk.append(_dense(tensors, f"{prefix}trunk.{len(trunk)}", dtype, splits))
            width = item
    heads = tuple(_dense(tensors, f"{prefix}pose_head.{i}", dtype) for i in range(len(config.pose_head) + 1))
    return _StageArrays(tuple(trunk), _dense(tensors, prefix + "camera_head", dtype), heads)


# --------------------------------------------------------------------------- the network


class Stage2Network:
    """A stage-2 model for numpy inference: ``forward(mixtures, x0) -> [x_1, .., x_n]``.

    Build it from a config and its tensors (named and shaped as
    :func:`~metapose_geom.stage2.weights.expected_shapes`), or :meth:`load` a weights file.

    Example::

        >>> network = Stage2Network.load("model.safetensors")          # doctest: +SKIP
        >>> xs = network.forward(mixtures, x0)                           # doctest: +SKIP
        >>> xs[-1].shape                                                  # doctest: +SKIP
        (1, 91)
    """

    def __init__(self, config: ModelConfig, tensors: Mapping[str, NDArray], source: str = "tensors") -> None:
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config: expected a ModelConfig, got {type(config).__name__}")
        if not isinstance(tensors, Mapping):
            raise ValueError(f"tensors: expected a mapping of names to arrays, got {type(tensors).__name__}")
        expected = expected_shapes(config)
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        if missing or extra:
            raise ValueError(f"{source}: tensors do not fit the config: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, shape in expected.items():
            value = np.asarray(tensors[name])
            if value.shape != shape or value.dtype.kind != "f" or not np.isfinite(value).all():
                raise ValueError(f"{source}: tensor {name!r} must be finite floats of shape {shape}, got "
                                 f"{value.dtype} {value.shape}")
        self.config = config
        self.source = source
        self._shared_inputs = tuple(n for n in config.inputs if n in SHARED_INPUTS)
        self._standardise = []
        for stage in range(config.num_stages):
            prefix = f"stages.{stage}."
            parts = [np.asarray(tensors[prefix + name], dtype=np.float64)
                     for name in ("shared_mean", "shared_std", "camera_mean", "camera_std")]
            for part in parts:
                part.setflags(write=False)
            self._standardise.append(tuple(parts))
        self._tensors = {name: np.asarray(tensors[name], dtype=np.float64) for name in expected}
        # the float64 arrays now, the float32 ones on first use (a benign race: built twice at worst)
        self._arrays = {np.float64: self._build(np.float64)}
        # the objective input's arguments: no bone term (bone weight 0); the core wants one bone
        self._no_bones = np.zeros((1, 2), dtype=np.int64)

    def _build(self, dtype: type) -> tuple[_StageArrays, ...]:
        config = self.config
        if dtype is np.float32:
            largest = max(float(np.abs(value).max(initial=0.0)) for value in self._tensors.values())
            if largest > float(np.finfo(np.float32).max):
                raise ValueError(f"dtype: {self.source} holds values beyond float32 (up to {largest:.3g}); use float64")
        return tuple(_stage_arrays(config, self._tensors, stage, dtype) for stage in range(config.num_stages))

    def _arrays_of(self, dtype: type) -> tuple[_StageArrays, ...]:
        arrays = self._arrays.get(dtype)
        if arrays is None:
            arrays = self._arrays[dtype] = self._build(dtype)
        return arrays

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Stage2Network:
        """The network of a ``.safetensors`` weights file (:func:`~metapose_geom.stage2.weights.load_weights`),
        or of the shipped default for None (``default.safetensors`` in the package
        :data:`DEFAULT_WEIGHTS_PACKAGE`). Networks are cached by resolved path and modification
        time, so loading again is free until the file changes.

        Raises :class:`MissingWeightsError` (a ValueError and a FileNotFoundError) when the file is
        absent or no default is shipped, and ValueError naming the file when it cannot be read.
        """
        if path is None:
            resolved = _default_weights_path()
        else:
            if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
                raise ValueError(f"weights: expected a path to a .safetensors file, got {path!r}")
            resolved = Path(path).expanduser().resolve()
            if not resolved.is_file():
                raise MissingWeightsError(f"weights: no weights file at {os.fspath(path)!r}")
        stat = resolved.stat()
        key = (str(resolved), stat.st_mtime_ns, stat.st_size)
        with _CACHE_LOCK:
            network = _CACHE.get(key)
        if network is not None:
            return network
        config, tensors = load_weights(resolved, require_sidecar=path is None)  # the shipped file: hash checked
        network = cls(config, tensors, str(resolved))
        with _CACHE_LOCK:
            for stale in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[stale]
            while len(_CACHE) >= _CACHE_SIZE:
                del _CACHE[next(iter(_CACHE))]
            _CACHE[key] = network
        return network

    def __repr__(self) -> str:
        c = self.config
        return (f"Stage2Network({self.source!r}, {c.kind}, {c.num_stages} stage(s), spec {c.spec!r}, "
                f"J={c.num_joints}, K={c.num_components})")

    # ------------------------------------------------------------------ inference

    def forward(self, mixtures: NDArray, x0: NDArray, bones: NDArray | None = None, stages: int | None = None,
                dtype: DTypeLike = np.float64) -> list[F64]:
        """mixtures (B, C, J, K, 4) ``[weight, mu_x, mu_y, variance]`` box units, x0 (B, P) the start
        -> ``[x_1, .., x_n]``, each (B, P) float64, P = 3 J + 10 C.

        A large batch is split over the compiled core's threads (:data:`FRAMES_PER_THREAD`); each
        frame's result is the same bits alone, in any batch and on any thread count.

        Args:
            mixtures: the frames' 2D evidence; J and K must be the model's, C any count from 2
                (an equivariant model) or the model's own (a flat one).
            x0: the solution vectors to start from (stage 1's, :mod:`metapose_geom.layout`).
            bones: (B, nB) reference bone lengths (any unit; divided by their mean), needed when
                the model has the ``bones`` input, else unused.
            stages: run only the first n stages (0 .. num_stages); None runs them all.
            dtype: ``np.float64`` (the default) or ``np.float32`` for the dense layers.
        """
        config = self.config
        compute = _compute_dtype(dtype)
        if compute is None:
            raise ValueError(f"dtype: expected float64 or float32, got {dtype!r}")
        count = config.num_stages if stages is None else check_int(stages, "stages", 0, config.num_stages)
        mixtures, x, bones = self._checked(mixtures, x0, bones)
        arrays = self._arrays_of(compute)
        B = mixtures.shape[0]
        threads = min(int(_core.get_num_threads()), B // FRAMES_PER_THREAD)
        if threads <= 1 or count == 0:
            return self._run(mixtures, x, bones, count, arrays, compute, None)
        return self._run_on_threads(mixtures, x, bones, count, arrays, compute, threads)

    def _run_on_threads(self, mixtures: F64, x: F64, bones: F64 | None, count: int,
                        arrays: tuple[_StageArrays, ...], compute: type, threads: int) -> list[F64]:
        """:meth:`_run` on ``threads`` contiguous parts of the batch, side by side."""
        B = mixtures.shape[0]
        # frames are independent and their bits do not depend on their batch (the core's dense
        # layers), so contiguous parts on threads give the same result; numpy and the core release
        # the GIL in the work, and each part's dense layers stay on its own thread
        edges = np.linspace(0, B, threads + 1).astype(int)
        parts = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="metapose-stage2") as pool:
            futures = [pool.submit(self._run, mixtures[part], x[part], None if bones is None else bones[part], count,
                                   arrays, compute, 1) for part in parts]
            results = [future.result() for future in futures]
        return [np.concatenate([result[stage] for result in results]) for stage in range(count)]

    def _run(self, mixtures: F64, x: F64, bones: F64 | None, count: int, arrays: tuple[_StageArrays, ...],
             compute: type, threads: int | None) -> list[F64]:
        """The first ``count`` stages on checked arguments, the dense layers on ``threads`` core
        threads (None: the core's count)."""
        B, C, J, K = mixtures.shape[:4]
        features = None
        if "mixtures" in self.config.inputs:
            features = np.concatenate([mixtures[..., :3], np.log(mixtures[..., 3:4])], axis=-1).reshape(B, C, 4 * J * K)
        if bones is not None:
            bones = bones / bones.mean(axis=-1, keepdims=True)
        outputs: list[F64] = []
        for stage in range(count):
            shared, camera = self._inputs(mixtures, features, x, stage, bones)
            x = x + self._stage(stage, arrays[stage], shared, camera, compute, threads)
            outputs.append(x)
        return outputs

    def _checked(self, mixtures: Any, x0: Any, bones: Any) -> tuple[F64, F64, F64 | None]:
        """The arguments as C-contiguous float64 arrays, or ValueError naming the bad one."""
        config = self.config
        J, K = config.num_joints, config.num_components
        mixtures = _float64(mixtures, "mixtures")
        if mixtures.ndim != 5 or mixtures.shape[2:] != (J, K, 4):
            raise ValueError(f"mixtures: expected shape (B, C, {J}, {K}, 4) for this model (J = {J} joints, K = {K} "
                             f"components), got {mixtures.shape}")
        B, C = mixtures.shape[:2]
        if C < 2:
            raise ValueError(f"mixtures: at least two cameras are needed, got C = {C}")
        config.check_cameras(C)
        if not np.isfinite(mixtures).all():
            raise ValueError("mixtures: holds NaN or infinite values")
        if not (mixtures[..., 3] > 0).all() or not (mixtures[..., 0] >= 0).all():
            raise ValueError("mixtures: weights must be >= 0 and variances > 0")
        x = _float64(x0, "x0")
        P = 3 * J + 10 * C
        if x.shape != (B, P):
            raise ValueError(f"x0: expected shape ({B}, {P}) (B frames, P = 3 J + 10 C), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x0: holds NaN or infinite values")
        if "bones" not in config.inputs:
            return mixtures, x, None
        if bones is None:
            raise ValueError("bones: this model takes the reference bone lengths as an input; pass them (B, nB)")
        bones = _float64(bones, "bones")
        if bones.shape != (B, config.num_bones):
            raise ValueError(f"bones: expected shape ({B}, {config.num_bones}), got {bones.shape}")
        if not np.isfinite(bones).all() or (bones < 0).any() or not (bones.sum(axis=-1) > 0).all():
            raise ValueError("bones: expected finite non-negative lengths with a positive sum per frame")
        return mixtures, x, bones

    def _inputs(self, mixtures: F64, features: F64 | None, x: F64, stage: int, bones: F64 | None
                ) -> tuple[F64, F64]:
        """The raw inputs of :func:`metapose_geom.nn.model.stage_inputs`: shared (B, Ds), camera (B, C, Dc)."""
        config = self.config
        inputs = config.inputs
        B, C, J = mixtures.shape[:3]
        pose, rot6d, scale_raw, shift = layout.unpack(x, C, J)
        shared: list[NDArray] = []
        for name in self._shared_inputs:
            if name == "pose":
                shared.append(pose.reshape(B, 3 * J))
            elif name == "objective":
                references = np.ones((B, 1))
                objective, _ = _core.refiner_objective(mixtures, x, self._no_bones, references, 0.0)
                shared.append(objective[:, None])
            elif name == "step":
                shared.append(np.full((B, 1), float(stage)))
            else:  # bones
                shared.append(bones)
        camera: list[NDArray] = []
        if "camera" in inputs:
            camera += [rot6d, scale_raw[..., None], shift]
        if "mixtures" in inputs:
            camera.append(features)
        if "projections" in inputs:
            scale = layout.scale_from_raw(scale_raw)
            points = _core.project_weak(np.ascontiguousarray(pose), _core.rot6d_to_matrix(np.ascontiguousarray(rot6d)),
                                        np.ascontiguousarray(scale), np.ascontiguousarray(shift))
            camera.append(points.reshape(B, C, 2 * J))
        shared_array = np.concatenate(shared, axis=-1) if shared else np.zeros((B, 0))
        return shared_array, np.concatenate(camera, axis=-1)

    def _stage(self, stage: int, arrays: _StageArrays, shared: F64, camera: F64, dtype: type, threads: int | None
               ) -> F64:
        """shared (B, Ds), camera (B, C, Dc) raw inputs -> the update (B, P) float64 (:class:`Stage`'s
        forward), the dense layers on ``threads`` core threads."""
        apply = functools.partial(_layer, threads=threads)
        config = self.config
        B, C = camera.shape[:2]
        J = config.num_joints
        shared_mean, shared_std, camera_mean, camera_std = self._standardise[stage]
        shared = ((shared - shared_mean) / shared_std).astype(dtype, copy=False)
        camera = ((camera - camera_mean) / camera_std).astype(dtype, copy=False)
        flat = config.kind == "flat"
        layers = config.layers
        dense = iter(arrays.trunk)
        # h: (rows, D) with rows = B C (equivariant, C rows per frame) or B (flat)
        if flat:
            h = np.concatenate([shared, camera.reshape(B, -1)], axis=-1)
        else:  # [shared | camera] @ W: the shared part once per frame, as the bias of its C camera rows
            first = next(dense)
            per_frame = apply(shared, first.blocks[0], first.bias)
            h = apply(camera.reshape(B * C, -1), first.blocks[1], per_frame, "selu")
        start = 0 if flat else 1
        position = start
        while position < len(layers):
            item = layers[position]
            if item == "ccat" or item == "cn":
                mean, std = _context_stats(h.reshape(B, C, -1))
                following = layers[position + 1] if position + 1 < len(layers) else None
                if item == "cn":
                    h = ((h.reshape(B, C, -1) - mean) / std).reshape(B * C, -1)
                elif isinstance(following, int):  # ccat then dense: [h | mean | std] @ W, by blocks
                    layer = next(dense)
                    own, of_mean, of_std = layer.blocks
                    per_frame = apply(mean[:, 0], of_mean, layer.bias)
                    per_frame = apply(std[:, 0], of_std, per_frame)
                    h = apply(h, own, per_frame, "selu")
                    position += 1
                else:
                    rows = h.reshape(B, C, -1)
                    h = np.concatenate([rows, np.broadcast_to(mean, rows.shape), np.broadcast_to(std, rows.shape)],
                                       axis=-1).reshape(B * C, -1)
            else:
                layer = next(dense)
                h = apply(h, layer.weight, layer.bias, "selu")
            position += 1
        head = arrays.camera_head
        camera_update = apply(h, head.weight, head.bias).reshape(B, C, CAMERA_WIDTH)
        embedding = h if flat else h.reshape(B, C, -1).mean(axis=1)
        for layer in arrays.pose_head[:-1]:
            embedding = apply(embedding, layer.weight, layer.bias, "selu")
        last = arrays.pose_head[-1]
        pose_update = apply(embedding, last.weight, last.bias)
        # layout.pack's order: [pose J*3 | rot6d C*6 | scale_raw C | shift C*3]
        return np.concatenate([pose_update.reshape(B, 3 * J), camera_update[..., 0:6].reshape(B, 6 * C),
                               camera_update[..., 6], camera_update[..., 7:10].reshape(B, 3 * C)],
                              axis=-1, dtype=np.float64)


def _compute_dtype(value: Any) -> type | None:
    """np.float64 or np.float32 for what names them, else None."""
    if value is None:
        return None
    try:
        return _DTYPES.get(np.dtype(value))
    except TypeError:
        return None


def _float64(value: Any, name: str) -> F64:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected a real numeric array ({error})") from None
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a real numeric array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


_CACHE: dict[tuple[str, int, int], Stage2Network] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def _default_weights_path() -> Path:
    """The shipped ``default.safetensors`` as a file path, or :class:`MissingWeightsError`."""
    advice = ("pass options weights='path/to/model.safetensors' (a model trained with `metapose-geom train`), "
              "or install a metapose-geom that ships stage-2 weights")
    try:
        resource = importlib.resources.files(DEFAULT_WEIGHTS_PACKAGE) / DEFAULT_WEIGHTS_FILE
    except ModuleNotFoundError:
        raise MissingWeightsError(f"weights: no stage-2 weights are shipped with this metapose-geom (no package "
                                  f"{DEFAULT_WEIGHTS_PACKAGE}); {advice}") from None
    if not resource.is_file():
        raise MissingWeightsError(f"weights: no stage-2 weights are shipped with this metapose-geom (no "
                                  f"{DEFAULT_WEIGHTS_FILE} in {DEFAULT_WEIGHTS_PACKAGE}); {advice}")
    if not isinstance(resource, Path):  # a zipped install: files on disk are needed for the sidecar
        raise MissingWeightsError(f"weights: the shipped {DEFAULT_WEIGHTS_FILE} is not a file on disk ({resource}); "
                                  f"{advice}")
    return resource.resolve()
