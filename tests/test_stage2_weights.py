"""Stage-2 weights files: round trips, and every kind of bad file is a ValueError naming it.

A weights file is never unpickled: a torch.save file whose unpickling would create a marker file
(checked to do so under torch.load) is refused by load_weights, Stage2Network.load and
``solve(..., method="metapose")``, and the marker never appears.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import pickle
import re

import numpy as np
import pytest
from safetensors.numpy import save

import metapose_geom as mg
from metapose_geom.stage2.config import FORMAT_VERSION, ModelConfig
from metapose_geom.stage2.forward import Stage2Network
from metapose_geom.stage2.weights import expected_shapes, load_weights, save_weights

from stage2_models import CONFIGS, FLAT, random_tensors

CONFIG = CONFIGS["equivariant"]


@pytest.fixture
def saved(tmp_path) -> tuple[pathlib.Path, dict[str, np.ndarray]]:
    tensors = random_tensors(CONFIG)
    return save_weights(tmp_path / "model.safetensors", CONFIG, tensors), tensors


def refused(path: pathlib.Path, message: str = "") -> str:
    """load_weights(path) raises a ValueError naming the file (and matching ``message``); returns it."""
    with pytest.raises(ValueError) as caught:
        load_weights(path)
    text = str(caught.value)
    assert path.name in text or path.with_suffix(".json").name in text, text
    assert re.search(message, text), text
    return text


def write_raw(path: pathlib.Path, tensors: dict[str, np.ndarray], config_json: str | None) -> pathlib.Path:
    """A safetensors file written directly (no sidecar), with ``config_json`` as its metadata."""
    metadata = None if config_json is None else {"config": config_json}
    path.write_bytes(save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata))
    return path


class TestRoundTrip:
    @pytest.mark.parametrize("config", [CONFIG, CONFIGS["bones"], CONFIGS["camera-only"], FLAT],
                             ids=["equivariant", "bones", "camera-only", "flat"])
    def test_save_then_load(self, tmp_path, config):
        tensors = random_tensors(config)
        tensors = {k: v.astype(np.float32) if "trunk" in k else v for k, v in tensors.items()}  # both dtypes kept
        path = save_weights(tmp_path / "sub" / "m.safetensors", config, tensors)
        loaded_config, loaded = load_weights(path)
        assert loaded_config == config and set(loaded) == set(expected_shapes(config))
        for name, value in tensors.items():
            assert loaded[name].dtype == value.dtype
            np.testing.assert_array_equal(loaded[name], value)
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert sidecar["format_version"] == FORMAT_VERSION
        assert sidecar["tensors"] == {k: list(v.shape) for k, v in sorted(tensors.items())}
        assert not list(path.parent.glob("*.partial"))

    def test_notes_travel_and_a_file_alone_loads(self, tmp_path):
        config = ModelConfig(num_stages=1, spec="16,ccat,8", notes={"recipe": "test", "epochs": 3})
        path = save_weights(tmp_path / "m.safetensors", config, random_tensors(config))
        path.with_suffix(".json").unlink()  # the sidecar is a check, not a requirement
        loaded_config, _ = load_weights(path)
        assert loaded_config.notes == {"recipe": "test", "epochs": 3}

    def test_save_refuses_what_does_not_fit(self, tmp_path):
        tensors = random_tensors(CONFIG)
        with pytest.raises(ValueError, match=r"^path: expected a \.safetensors file name"):
            save_weights(tmp_path / "m.pt", CONFIG, tensors)
        with pytest.raises(ValueError, match=r"^config: expected a ModelConfig"):
            save_weights(tmp_path / "m.safetensors", CONFIG.to_dict(), tensors)
        with pytest.raises(ValueError, match=r"^tensors: .*missing \['stages.0.camera_head.bias'\]"):
            save_weights(tmp_path / "m.safetensors", CONFIG,
                         {k: v for k, v in tensors.items() if k != "stages.0.camera_head.bias"})
        with pytest.raises(ValueError, match=r"^tensors: tensor 'stages.1.shared_std' must be > 0"):
            save_weights(tmp_path / "m.safetensors", CONFIG, dict(tensors, **{"stages.1.shared_std":
                                                                                  -tensors["stages.1.shared_std"]}))
        assert not (tmp_path / "m.safetensors").exists()

    def test_absent_file_is_file_not_found(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            load_weights(tmp_path / "absent.safetensors")


class TestBadFiles:
    def test_truncated(self, saved):
        path, _ = saved
        blob = path.read_bytes()
        path.with_suffix(".json").unlink()
        for length in (len(blob) - 1, len(blob) // 2, 40, 9, 3, 0):
            path.write_bytes(blob[:length])
            refused(path, "truncated|not a readable safetensors|not a safetensors")

    def test_not_safetensors(self, tmp_path):
        cases = {
            "random.safetensors": np.random.default_rng(0).bytes(5000),
            "text.safetensors": b'{"format": "metapose-geom-stage2"}' * 10,
            "npy.safetensors": b"\x93NUMPY\x01\x00" + b" " * 200,
            "folder.safetensors": None,
        }
        for name, data in cases.items():
            path = tmp_path / name
            if data is None:
                path.mkdir()
            else:
                path.write_bytes(data)
            refused(path)

    def test_a_safetensors_file_of_something_else(self, tmp_path):
        plain = write_raw(tmp_path / "plain.safetensors", {"a": np.zeros(3)}, None)
        refused(plain, "without a stage-2 config")
        ints = random_tensors(CONFIG)
        ints["stages.0.trunk.0.bias"] = ints["stages.0.trunk.0.bias"].astype(np.int64)
        refused(write_raw(tmp_path / "ints.safetensors", ints, CONFIG.to_json()), "is int64, expected float32")

    def test_wrong_shapes_missing_and_extra_tensors(self, saved, tmp_path):
        _, tensors = saved
        wrong = dict(tensors, **{"stages.0.trunk.1.weight": np.zeros((5, 5))})
        refused(write_raw(tmp_path / "shape.safetensors", wrong, CONFIG.to_json()),
                r"'stages.0.trunk.1.weight' has shape \(5, 5\), the config needs \(32, 120\)")
        missing = {k: v for k, v in tensors.items() if k != "stages.1.pose_head.2.weight"}
        refused(write_raw(tmp_path / "missing.safetensors", missing, CONFIG.to_json()),
                r"missing \['stages.1.pose_head.2.weight'\]")
        extra = dict(tensors, **{"stages.2.trunk.0.bias": np.zeros(3)})
        refused(write_raw(tmp_path / "extra.safetensors", extra, CONFIG.to_json()),
                r"unexpected \['stages.2.trunk.0.bias'\]")
        nan = dict(tensors, **{"stages.0.camera_mean": np.full_like(tensors["stages.0.camera_mean"], np.nan)})
        refused(write_raw(tmp_path / "nan.safetensors", nan, CONFIG.to_json()), "NaN or infinite")

    def test_another_format_version(self, saved, tmp_path):
        path, tensors = saved
        future = dict(CONFIG.to_dict(), format_version=FORMAT_VERSION + 1)
        refused(write_raw(tmp_path / "future.safetensors", tensors, json.dumps(future)),
                rf"format_version {FORMAT_VERSION + 1} is not supported")
        sidecar = path.with_suffix(".json")
        recorded = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps(dict(recorded, format_version=FORMAT_VERSION + 1)))
        refused(path, rf"model.json: format_version {FORMAT_VERSION + 1} is not supported")

    def test_hash_mismatch(self, saved):
        path, _ = saved
        blob = bytearray(path.read_bytes())
        blob[-3] ^= 0x01  # one bit of the last tensor's data
        path.write_bytes(bytes(blob))
        refused(path, r"sha256 .* differs from the one in model.json .*; the file is damaged or was replaced")

    def test_bad_sidecars(self, saved):
        path, _ = saved
        sidecar = path.with_suffix(".json")
        good = json.loads(sidecar.read_text())
        for text, message in (
            ("{not json", "model.json: not valid JSON"),
            ("[1, 2]", "model.json: expected a JSON object"),
            (json.dumps(dict(good, spec="40,ccat,32,cn,25")), "the config in model.json differs from the file's own"),
            (json.dumps(dict(good, tensors={"a": [1]})), "model.json: its tensor shapes differ"),
            (json.dumps(dict(good, surprise=1)), r"model.json: unknown field\(s\) \['surprise'\]"),
            (json.dumps({k: v for k, v in good.items() if k != "sha256"}), "sha256 .* differs"),
        ):
            sidecar.write_text(text)
            refused(path, message)

    def test_absurd_json_nesting_and_integers(self, saved, tmp_path):
        path, tensors = saved
        deep = "[" * 100_000 + "]" * 100_000
        huge = "1" * 5000
        refused(write_raw(tmp_path / "deep-config.safetensors", tensors, deep), "not valid JSON")
        sidecar = path.with_suffix(".json")
        for text in (deep, '{"sha256": ' + huge + "}"):
            sidecar.write_text(text)
            refused(path, "model.json: not valid JSON")
        for name, header in (("deep", deep), ("huge", '{"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, '
                                                      + huge + "]}}")):
            raw = header.encode()
            bad = tmp_path / f"{name}-header.safetensors"
            bad.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(16))
            refused(bad, "not a readable safetensors file")

    def test_a_file_too_large_is_refused_before_reading(self, saved, monkeypatch):
        path, _ = saved
        monkeypatch.setattr("metapose_geom.stage2.weights.MAX_WEIGHTS_BYTES", path.stat().st_size - 1)
        refused(path, "more than a stage-2 weights file may hold")

    def test_a_required_sidecar_must_be_there(self, saved):
        path, _ = saved
        load_weights(path, require_sidecar=True)
        path.with_suffix(".json").unlink()
        load_weights(path)  # a user's file alone loads
        with pytest.raises(ValueError, match=r"model.json \(config and sha256\) is missing"):
            load_weights(path, require_sidecar=True)

    def test_bad_config_json_in_the_file(self, saved, tmp_path):
        _, tensors = saved
        refused(write_raw(tmp_path / "garbled.safetensors", tensors, "{oops"), "not valid JSON")
        refused(write_raw(tmp_path / "other.safetensors", tensors, json.dumps({"format": "keras"})),
                "not a stage-2 config")


class _Marker:
    """Unpickling this creates the file at ``path``: what a malicious weights file would do."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


class TestNeverUnpickled:
    def test_a_torch_pickle_is_refused_and_never_executed(self, tmp_path):
        torch = pytest.importorskip("torch")
        marker = tmp_path / "executed"
        payloads = {"zip.safetensors": {}, "legacy.safetensors": {"_use_new_zipfile_serialization": False}}
        # the payload is real: torch.load without weights_only runs it
        probe = tmp_path / "probe.pt"
        torch.save({"weights": _Marker(tmp_path / "probe-executed")}, probe)
        torch.load(probe, weights_only=False)
        assert (tmp_path / "probe-executed").exists()

        for name, options in payloads.items():
            path = tmp_path / name
            torch.save({"stages.0.trunk.0.weight": _Marker(marker)}, path, **options)
            refused(path, "not a safetensors file|not a readable safetensors file")
            with pytest.raises(ValueError, match=name):
                Stage2Network.load(path)
            views = mg.synth.make_scene(1).views()
            with pytest.raises(ValueError, match=name):
                mg.solve(views, "metapose", {"weights": str(path)})
        # a bare pickle too
        bare = tmp_path / "bare.safetensors"
        bare.write_bytes(pickle.dumps(_Marker(marker)))
        refused(bare)
        assert not marker.exists()

    def test_the_zip_refusal_says_why(self, tmp_path):
        torch = pytest.importorskip("torch")
        path = tmp_path / "model.safetensors"
        torch.save({"a": torch.zeros(2)}, path)
        refused(path, r"it is a zip archive \(torch.save writes these")
