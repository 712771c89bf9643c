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

__all__ = ["MAX_WEIGHTS_BYTES", "expected_shapes", "load_weights", "save_weights"]

#: The largest weights file read (1 GiB; the shipped one is 6 MB): reading a file holds all of it.
MAX_WEIGHTS_BYTES = 2**30


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
    """Write ``tensors`` (exactly :func:`expected_shapes` of ``config``; float32 or float64 arrays,
    or anything ``np.asarray`` takes) to ``path`` (``.safetensors``) and the config, hash and
    shapes to ``path`` with ``.json``. Returns the ``.safetensors`` path. Each file is written to a
    temporary name and renamed, so neither is ever left half-written."""
    from safetensors.numpy import save

    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a .safetensors file name, got {type(path).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path: expected a .safetensors file name, got {str(path)!r}")
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config: expected a ModelConfig, got {type(config).__name__}")
    if not isinstance(tensors, Mapping):
        raise ValueError(f"tensors: expected a mapping of names to arrays, got {type(tensors).__name__}")
    arrays = {}
    for name, value in tensors.items():
        try:
            arrays[name] = np.ascontiguousarray(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"tensors: {name!r} is not an array ({error})") from None
    _check_tensors(config, arrays, "tensors")
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
    for stage in range(config.num_stages):
        for name in ("shared_std", "camera_std"):
            if not (tensors[f"stages.{stage}.{name}"] > 0).all():
                raise ValueError(f"{source}: tensor 'stages.{stage}.{name}' must be > 0 (input standard deviations)")


#: the first bytes of files that are certainly not safetensors, named in the error
_FOREIGN = ((b"PK\x03\x04", "a zip archive (torch.save writes these: a pickle inside, never read here)"),
            (b"\x89HDF", "an HDF5 file"),
            (b"\x93NUMPY", "a numpy .npy file"))
#: safetensors headers are JSON of a few kB; a larger claimed size is a foreign or damaged file
_MAX_HEADER = 100_000_000


def _parse(blob: bytes, source: str) -> tuple[dict[str, str], dict[str, NDArray]]:
    """The metadata and tensors of a safetensors file's bytes; ValueError naming ``source`` otherwise.

    Only the safetensors layout is read: an 8-byte little-endian header size, a JSON header, raw
    little-endian arrays. Nothing in the file is ever executed or unpickled."""
    from safetensors.numpy import load

    for magic, what in _FOREIGN:
        if blob.startswith(magic):
            raise ValueError(f"{source}: not a safetensors file: it is {what}; save the weights with "
                             "metapose_geom.stage2.weights.save_weights")
    if len(blob) < 10:
        raise ValueError(f"{source}: not a safetensors file ({len(blob)} bytes: truncated or empty)")
    header_size = int.from_bytes(blob[:8], "little")
    if header_size < 2 or header_size > min(len(blob) - 8, _MAX_HEADER):
        raise ValueError(f"{source}: not a readable safetensors file (its header claims {header_size} bytes, the "
                         f"file holds {len(blob) - 8} after the size): truncated, or another format")
    try:
        header = json.loads(blob[8:8 + header_size])
    except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, absurd nesting or integers
        raise ValueError(f"{source}: not a readable safetensors file (its header is not JSON: {error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: not a readable safetensors file (its header is not a JSON object)")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(v) is int for v in offsets)):
            raise ValueError(f"{source}: not a readable safetensors file (tensor {name!r} has no data offsets)")
        end = max(end, offsets[1])
    if 8 + header_size + end > len(blob):
        raise ValueError(f"{source}: truncated: its tensors need {8 + header_size + end} bytes, the file has "
                         f"{len(blob)}")
    try:
        tensors = load(blob)
    except Exception as error:  # safetensors' own errors, unknown dtypes and the like: never a crash
        raise ValueError(f"{source}: not a readable safetensors file ({type(error).__name__}: {error})") from None
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: not a readable safetensors file (its metadata is not a JSON object)")
    return metadata, tensors


def load_weights(path: str | os.PathLike, require_sidecar: bool = False) -> tuple[ModelConfig, dict[str, NDArray]]:
    """The config and tensors of a ``.safetensors`` file written by :func:`save_weights`.

    When the ``.json`` beside it exists (it must with ``require_sidecar``, as for the shipped
    weights), its hash must match the file's bytes, its config the
    file's own and its tensor shapes the file's. ValueError naming the file (or its ``.json``)
    for a truncated or foreign file (a torch pickle is refused by its first bytes and never
    unpickled), another format version, a hash mismatch, bad JSON, or tensors that do not fit the
    config (missing, extra, wrong shape or dtype, not finite); FileNotFoundError when it is absent.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path: expected a .safetensors file name, got {type(path).__name__}")
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise ValueError(f"{source}: is a folder, not a .safetensors file")
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{source}: {size} bytes, more than a stage-2 weights file may hold "
                         f"({MAX_WEIGHTS_BYTES} bytes)")
    blob = path.read_bytes()
    metadata, tensors = _parse(blob, source)
    if "config" not in metadata:
        raise ValueError(f"{source}: a safetensors file without a stage-2 config in its metadata (not written by "
                         "save_weights)")
    config = ModelConfig.from_json(metadata["config"], source)
    sidecar = _sidecar(path)
    if sidecar.exists():
        _check_sidecar(sidecar, blob, config, tensors, source)
    elif require_sidecar:
        raise ValueError(f"{source}: its {sidecar.name} (config and sha256) is missing, so the file cannot be "
                         "checked; reinstall metapose-geom")
    _check_tensors(config, tensors, source)
    return config, tensors


def _check_sidecar(sidecar: Path, blob: bytes, config: ModelConfig, tensors: Mapping[str, NDArray], source: str
                   ) -> None:
    """The ``.json`` beside a weights file agrees with it (hash, config, shapes), else ValueError."""
    try:
        recorded = json.loads(sidecar.read_bytes())
    except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, absurd nesting or integers
        raise ValueError(f"{sidecar}: not valid JSON ({error})") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{sidecar}: expected a JSON object, got {type(recorded).__name__}")
    described = {k: v for k, v in recorded.items() if k not in ("sha256", "tensors")}
    described_config = ModelConfig.from_dict(described, str(sidecar))  # another format version is refused here
    digest = hashlib.sha256(blob).hexdigest()
    if recorded.get("sha256") != digest:
        raise ValueError(f"{source}: its sha256 {digest[:12]}... differs from the one in {sidecar.name} "
                         f"({str(recorded.get('sha256'))[:12]}...); the file is damaged or was replaced")
    if described_config != config:
        raise ValueError(f"{source}: the config in {sidecar.name} differs from the file's own")
    shapes = recorded.get("tensors")
    actual = {name: list(value.shape) for name, value in tensors.items()}
    if shapes is not None and shapes != actual:
        raise ValueError(f"{sidecar}: its tensor shapes differ from those in {Path(source).name}")
