"""Stage-2 weights files: safetensors tensors, the config beside them, a hash and a format version.

A model is two files: ``NAME.safetensors`` (the tensors, named as in
:mod:`metapose_geom.nn.model`; the config's JSON also sits in the file's metadata) and
``NAME.json`` (the config of :meth:`ModelConfig.to_dict` plus ``sha256``, the hash of the
``.safetensors`` file's bytes, and ``tensors``, each tensor's shape). Reading never executes code
(safetensors holds raw arrays only); what does not fit the config is a ValueError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .config import CAMERA_WIDTH, ModelConfig

__all__ = ["expected_shapes", "load_weights", "save_weights"]


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a model of ``config`` has, by name, with its shape (torch's ``Linear`` layout:
    weight (out, in), bias (out,))."""
    shapes: dict[str, tuple[int, ...]] = {}
    flat = config.kind == "flat"
    cameras = config.num_cameras if flat else 1
    for stage in range(config.num_stages):
        prefix = f"stages.{stage}."
        shapes[prefix + "shared_mean"] = shapes[prefix + "shared_std"] = (config.shared_width,)
        shapes[prefix + "camera_mean"] = shapes[prefix + "camera_std"] = (config.camera_width,)
        width, dense = config.shared_width + cameras * config.camera_width, 0
        for item in config.layers:
            if item == "ccat":
                width *= 3
            elif isinstance(item, int):
                shapes[f"{prefix}trunk.{dense}.weight"], shapes[f"{prefix}trunk.{dense}.bias"] = (item, width), (item,)
                width, dense = item, dense + 1
        shapes[prefix + "camera_head.weight"] = (cameras * CAMERA_WIDTH, width)
        shapes[prefix + "camera_head.bias"] = (cameras * CAMERA_WIDTH,)
        for index, out in enumerate((*config.pose_head, config.pose_width)):
            shapes[f"{prefix}pose_head.{index}.weight"], shapes[f"{prefix}pose_head.{index}.bias"] = (out, width), (out,)
            width = out
    return shapes


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_weights(path: str | os.PathLike, config: ModelConfig, tensors: Mapping[str, NDArray]) -> Path:
    """Write ``tensors`` (exactly :func:`expected_shapes` of ``config``; float32 or float64) to
    ``path`` (``.safetensors``) and the config, hash and shapes to ``path`` with ``.json``.
    Returns the ``.safetensors`` path. Both files are written whole or not at all."""
    from safetensors.numpy import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path: expected a .safetensors file name, got {str(path)!r}")
    _check_tensors(config, tensors, str(path))
    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    blob = save(arrays, metadata={"config": config.to_json()})
    sidecar = dict(config.to_dict(), sha256=hashlib.sha256(blob).hexdigest(),
                   tensors={name: list(value.shape) for name, value in sorted(arrays.items())})
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, data in ((path, blob), (_sidecar(path), json.dumps(sidecar, indent=1, sort_keys=True).encode())):
        temporary = target.with_name(target.name + ".partial")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    return path


def _check_tensors(config: ModelConfig, tensors: Mapping[str, NDArray], source: str) -> None:
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(f"{source}: tensors do not fit the config: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in expected.items():
        value = tensors[name]
        if tuple(value.shape) != shape:
            raise ValueError(f"{source}: tensor {name!r} has shape {tuple(value.shape)}, the config needs {shape}")
        if value.dtype not in (np.float32, np.float64):
            raise ValueError(f"{source}: tensor {name!r} is {value.dtype}, expected float32 or float64")
        if not np.isfinite(value).all():
            raise ValueError(f"{source}: tensor {name!r} holds NaN or infinite values")


def load_weights(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, NDArray]]:
    """The config and tensors of a ``.safetensors`` file written by :func:`save_weights`.

    When the ``.json`` beside it exists, its hash must match the file's bytes and its config the
    file's own. ValueError naming the file for a truncated or foreign file, another format version,
    a hash mismatch, or tensors that do not fit the config; FileNotFoundError when it is absent.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    blob = path.read_bytes()
    source = str(path)
    try:
        header_size = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + header_size])
        metadata = header.get("__metadata__") or {}
        tensors = load(blob)
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{source}: not a readable safetensors file ({error})") from None
    if "config" not in metadata:
        raise ValueError(f"{source}: a safetensors file without a stage-2 config in its metadata")
    config = ModelConfig.from_json(metadata["config"], source)
    sidecar = _sidecar(path)
    if sidecar.exists():
        try:
            recorded = json.loads(sidecar.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{sidecar}: not valid JSON ({error})") from None
        digest = hashlib.sha256(blob).hexdigest()
        if not isinstance(recorded, dict) or recorded.get("sha256") != digest:
            raise ValueError(f"{source}: its sha256 {digest[:12]}... differs from the one in {sidecar.name}; the file "
                             "is damaged or was replaced")
        described = {k: v for k, v in recorded.items() if k not in ("sha256", "tensors")}
        if ModelConfig.from_dict(described, str(sidecar)) != config:
            raise ValueError(f"{source}: the config in {sidecar.name} differs from the file's own")
    _check_tensors(config, tensors, source)
    return config, tensors
