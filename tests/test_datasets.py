"""Tests of metapose_geom.datasets: exact write-read round trips, shape and dtype validation, the
commit protocol (a half-written chunk never counts), resumable synthetic builds, including a
build killed with SIGKILL midway and restarted, compared byte for byte with one built in one go,
the Scene <-> fields conversion both ways, and what reading a file imports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import cli, datasets, synth
from metapose_geom.layout import solution_size
from metapose_geom.datasets import (
    FIELDS, FORMAT_VERSION, REQUIRED_FIELDS, SCENE_FIELDS, DatasetReader, DatasetWriter, build_synthetic_dataset,
    committed_frames, field_shape, make_datasets, scene_fields, scene_from_fields, split_seed, synthetic,
    synthetic_frames,
)
from metapose_geom.skeletons import H36M_17, Skeleton
from metapose_geom.views import Views
from read_only import read_only_available, run_read_only

C, J, K = 3, 17, 2
ALL = tuple(FIELDS)


def random_chunk(rng: np.random.Generator, count: int, start: int = 0, fields=ALL, cameras: int = C) -> dict:
    """Random values of every field's shape and dtype, ``count`` frames; keys are non-ASCII strings."""
    chunk = {}
    for name in fields:
        shape = (count, *field_shape(name, cameras, J, K))
        dtype = FIELDS[name].dtype
        if dtype == "float64":
            chunk[name] = rng.normal(size=shape) * 10.0 ** rng.integers(-300, 300, size=shape)
        elif dtype == "bool":
            chunk[name] = rng.uniform(size=shape) < 0.3
        else:
            chunk[name] = np.array([[f"frame{start + i}/cam{c}/é{'x' * int(rng.integers(0, 40))}"
                                     for c in range(cameras)] for i in range(count)], dtype=str).reshape(count, cameras)
    if "heatmaps" in chunk:
        chunk["heatmaps"][..., 0] = rng.uniform(0.1, 1.0, size=chunk["heatmaps"].shape[:-1])
        chunk["heatmaps"][..., 1:3] = rng.uniform(0.0, 1.0, size=chunk["heatmaps"].shape[:-1] + (2,))  # box units
        chunk["heatmaps"][..., 3] = rng.uniform(1e-4, 1e-2, size=chunk["heatmaps"].shape[:-1])
        chunk["bboxes"] = np.abs(chunk["bboxes"]) + 1.0
    return chunk


def concatenate(chunks: list[dict]) -> dict:
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def assert_exact(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Same shape, dtype family and bytes (floats compared bit for bit, strings as strings)."""
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if want.dtype.kind in "USO":
        assert got.dtype.kind == "U", (what, got.dtype)
        assert got.tolist() == want.tolist(), what
    else:
        assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
        assert got.tobytes() == want.tobytes(), what


def assert_same_dataset(path_a, path_b) -> None:
    """Two files hold the same frames, fields and attributes, every field byte for byte."""
    with DatasetReader(path_a) as a, DatasetReader(path_b) as b:
        assert len(a) == len(b) and a.fields == b.fields
        assert a.attrs == b.attrs and a.frames_planned == b.frames_planned
        for name in a.fields:
            assert_exact(a.read(name), b.read(name), name)


# --------------------------------------------------------------------------- round trips


class TestRoundTrip:
    @pytest.mark.parametrize("compression", ["gzip", "lzf", None])
    def test_write_read_is_exact(self, tmp_path, rng, compression):
        path = tmp_path / "data.h5"
        sizes = [5, 1, 7, 4, 0, 3]  # uneven appends across HDF5 chunks of 4 frames
        chunks, start = [], 0
        for size in sizes:
            chunks.append(random_chunk(rng, size, start))
            start += size
        names = ("left", "right", "top")
        with DatasetWriter(path, C, ALL, K, mode="x", attrs={"note": "round trip", "seed": 7, "ok": True, "x": 0.5},
                           frames_planned=20, camera_names=names, chunk_frames=4, compression=compression) as writer:
            for chunk in chunks:
                writer.append(chunk)
            assert writer.frames_committed == len(writer) == 20
        want = concatenate(chunks)
        with DatasetReader(path, skeleton=H36M_17) as reader:
            assert len(reader) == 20 and reader.complete
            assert reader.fields == ALL and reader.camera_names == names
            assert (reader.num_cameras, reader.num_joints, reader.num_components) == (C, J, K)
            assert reader.format_version == FORMAT_VERSION and reader.skeleton == H36M_17
            assert reader.attrs == {"note": "round trip", "seed": 7, "ok": True, "x": 0.5}
            for name in ALL:
                assert reader.shape(name) == want[name].shape
                assert_exact(reader.read(name), want[name], name)
                assert_exact(reader.read(name, 3, 11), want[name][3:11], name)
                assert_exact(reader.read(name, -4), want[name][-4:], name)
                assert_exact(reader.read(name, 18, 100), want[name][18:], name)
            streamed = list(reader.frames(batch_size=6))
            assert [len(batch["keys"]) for batch in streamed] == [6, 6, 6, 2]
            for name in ALL:
                assert_exact(np.concatenate([batch[name] for batch in streamed]), want[name], name)
            frame = reader.frame(13)
            for name in ALL:
                assert_exact(np.asarray(frame[name]), want[name][13], name)
            views = reader.views(13)
            assert isinstance(views, Views) and views.camera_names == names
            assert_exact(views.mixtures, want["heatmaps"][13], "views.mixtures")
            assert_exact(views.mono3d, want["pose3d_epi_pred"][13], "views.mono3d")
            assert_exact(views.boxes, want["bboxes"][13], "views.boxes")
            assert "20 frames" in repr(reader)

    def test_file_carries_format_skeleton_and_units(self, tmp_path, rng):
        path = tmp_path / "data.h5"
        with DatasetWriter(path, C, ("pose3d",), K) as writer:
            writer.append(random_chunk(rng, 3, fields=REQUIRED_FIELDS + ("pose3d",)))
        with h5py.File(path, "r") as handle:
            assert handle.attrs["format"] == "metapose-geom-dataset"
            assert handle.attrs["format_version"] == FORMAT_VERSION
            assert handle.attrs["skeleton"] == "h36m17" and handle.attrs["frames_committed"] == 3
            assert set(handle) == set(REQUIRED_FIELDS) | {"pose3d"}
            heatmaps = handle["heatmaps"]
            assert heatmaps.chunks[0] == 64 and heatmaps.compression == "gzip" and heatmaps.shuffle
            assert heatmaps.maxshape == (None, C, J, K, 4)
            assert handle["pose3d"].attrs["units"] == "mm" and handle["heatmaps"].attrs["units"] == "box"

    def test_lossless_conversions_are_accepted(self, tmp_path, rng):
        path = tmp_path / "data.h5"
        chunk = random_chunk(rng, 4, fields=REQUIRED_FIELDS)
        chunk["pose2d_pred"] = rng.normal(size=(4, C, J, 2)).astype(np.float32)
        chunk["bboxes"] = rng.integers(1, 1000, size=(4, C, 4)).astype(np.int32)
        chunk["keys"] = np.char.encode(np.array([[f"f{i}c{c}" for c in range(C)] for i in range(4)]), "utf-8")
        with DatasetWriter(path, C, None, K) as writer:
            writer.append(chunk)
        with DatasetReader(path) as reader:
            assert_exact(reader.read("pose2d_pred"), chunk["pose2d_pred"].astype(np.float64), "pose2d_pred")
            assert_exact(reader.read("bboxes"), chunk["bboxes"].astype(np.float64), "bboxes")
            assert reader.read("keys")[3, 2] == "f3c2"

    def test_empty_file_reads_as_zero_frames(self, tmp_path):
        path = tmp_path / "data.h5"
        DatasetWriter(path, C, None, K).close()
        with DatasetReader(path) as reader:
            assert len(reader) == 0 and reader.read("heatmaps").shape == (0, C, J, K, 4)
            assert reader.read("keys").shape == (0, C) and list(reader.frames()) == []
            with pytest.raises(IndexError):
                reader.views(0)


# --------------------------------------------------------------------------- validation


class TestValidation:
    @pytest.fixture
    def writer(self, tmp_path):
        with DatasetWriter(tmp_path / "data.h5", C, ("pose3d", "occluded"), K) as writer:
            yield writer

    def chunk(self, rng, count=2):
        return random_chunk(rng, count, fields=REQUIRED_FIELDS + ("pose3d", "occluded"))

    @pytest.mark.parametrize("field, bad, expected", [
        ("heatmaps", np.zeros((2, C, J, 4, 4)), r"heatmaps: expected shape \(N, C, J, K, 4\) = \(N, 3, 17, 2, 4\)"),
        ("heatmaps", np.zeros((2, C, J, K)), r"heatmaps: expected shape \(N, C, J, K, 4\)"),
        ("pose3d", np.zeros((J, 3)), r"pose3d: expected shape \(N, J, 3\) = \(N, 17, 3\) and dtype float64"),
        ("bboxes", np.zeros((2, C, 4), dtype=np.complex128), r"bboxes: .*dtype float64.*complex128"),
        ("bboxes", np.zeros((2, C, 4), dtype=np.int64), r"bboxes: .*dtype float64.*int64"),
        ("bboxes", np.zeros((2, C, 4), dtype=bool), r"bboxes: .*dtype float64.*bool"),
        ("pose3d_epi_pred", np.full((2, C, J, 3), "a"), r"pose3d_epi_pred: .*dtype float64"),
        ("occluded", np.zeros((2, C, J)), r"occluded: expected shape \(N, C, J\) = \(N, 3, 17\) and dtype bool"),
        ("keys", np.zeros((2, C)), r"keys: expected shape \(N, C\) = \(N, 3\) and dtype str"),
        ("keys", np.array([["a"] * (C + 1)] * 2), r"keys: expected shape \(N, C\)"),
        ("keys", np.array([[b"\xff"] * C] * 2), r"keys: byte strings must be UTF-8"),
    ])
    def test_bad_field_names_field_and_expectation(self, writer, rng, field, bad, expected):
        chunk = self.chunk(rng)
        chunk[field] = bad
        with pytest.raises(ValueError, match=expected):
            writer.append(chunk)
        assert len(writer) == 0
        writer.close()
        with h5py.File(writer.path, "r") as handle:
            assert all(handle[name].shape[0] == 0 for name in handle)  # nothing written

    def test_missing_unknown_and_ragged_chunks(self, writer, rng):
        chunk = self.chunk(rng)
        with pytest.raises(ValueError, match=r"missing field\(s\) \['pose3d'\]"):
            writer.append({k: v for k, v in chunk.items() if k != "pose3d"})
        with pytest.raises(ValueError, match=r"unexpected field\(s\) \['ir_x'\]"):
            writer.append({**chunk, "ir_x": np.zeros((2, solution_size(C, J)))})
        chunk["pose3d"] = chunk["pose3d"][:1]
        with pytest.raises(ValueError, match="different numbers of frames"):
            writer.append(chunk)
        with pytest.raises(ValueError, match="chunk: expected a mapping"):
            writer.append([1, 2])
        writer.close()
        with pytest.raises(ValueError, match="closed"):
            writer.append(self.chunk(rng))

    def test_writer_arguments(self, tmp_path):
        path = tmp_path / "data.h5"
        for kwargs, expected in [
            (dict(num_cameras=1), "num_cameras"), (dict(num_components=0), "num_components"),
            (dict(fields=["nope"]), "unknown field 'nope'"), (dict(mode="r"), "mode"),
            (dict(compression="zstd"), "compression"), (dict(attrs={"format": "x"}), "reserved"),
            (dict(attrs={"list": [1, 2]}), "attrs: 'list'"), (dict(camera_names=["a", "a", "b"]), "camera_names"),
            (dict(chunk_frames=0), "chunk_frames"), (dict(skeleton="h36m17"), "skeleton"),
        ]:
            arguments = dict(num_cameras=C) | kwargs
            with pytest.raises(ValueError, match=expected):
                DatasetWriter(path, **arguments)
        assert not path.exists()
        DatasetWriter(path, C).close()
        with pytest.raises(FileExistsError):
            DatasetWriter(path, C)

    def test_append_mode_requires_the_same_layout(self, tmp_path, rng):
        path = tmp_path / "data.h5"
        with DatasetWriter(path, C, ("pose3d",), K, attrs={"seed": 1}) as writer:
            writer.append(random_chunk(rng, 2, fields=REQUIRED_FIELDS + ("pose3d",)))
        for kwargs, expected in [
            (dict(num_cameras=4), "num_cameras"), (dict(num_components=3), "num_components"),
            (dict(fields=()), "fields"), (dict(attrs={"seed": 2}), "attribute seed"),
            (dict(attrs={"seed": 1.0}), "attribute seed"), (dict(attrs={"other": 1}), "attribute other"),
            (dict(frames_planned=1), "below the 2 frames"),
        ]:
            arguments = dict(num_cameras=C, fields=("pose3d",), num_components=K, attrs={"seed": 1}) | kwargs
            with pytest.raises(ValueError, match=expected):
                DatasetWriter(path, mode="a", **arguments)
        with DatasetWriter(path, C, ("pose3d",), K, mode="a", attrs={"seed": 1}) as writer:
            assert len(writer) == 2
        with DatasetWriter(path, C, ("pose3d",), K, mode="w") as writer:
            assert len(writer) == 0

    @pytest.fixture
    def good_file(self, tmp_path, rng):
        path = tmp_path / "data.h5"
        with DatasetWriter(path, C, ("pose3d",), K) as writer:
            writer.append(random_chunk(rng, 3, fields=REQUIRED_FIELDS + ("pose3d",)))
        return path

    @pytest.mark.parametrize("change, expected", [
        (lambda f: f.attrs.__setitem__("format_version", FORMAT_VERSION + 1), "format_version: .*newer"),
        (lambda f: f.attrs.__setitem__("format_version", 0), "format_version"),
        (lambda f: f.attrs.__delitem__("format"), "not a metapose-geom dataset"),
        (lambda f: f.attrs.__setitem__("skeleton", "coco17"), "skeleton: unknown skeleton 'coco17'"),
        (lambda f: f.attrs.__setitem__("num_joints", 16), "num_joints"),
        (lambda f: f.attrs.__setitem__("frames_committed", 4), r"\d+ frames stored but 4 committed"),
        (lambda f: f.attrs.__setitem__("camera_names", "[]"), "camera_names"),
        (lambda f: f.create_dataset("extra", data=np.zeros(3)), r"unknown field\(s\) \['extra'\]"),
        (lambda f: f.__delitem__("bboxes"), r"required field\(s\) \['bboxes'\] missing"),
        (lambda f: (f.__delitem__("pose3d"), f.create_dataset("pose3d", data=np.zeros((3, J, 2)))),
         r"pose3d: expected shape \(N, J, 3\) = \(N, 17, 3\) and dtype float64, the file has shape \(3, 17, 2\)"),
        (lambda f: (f.__delitem__("pose3d"), f.create_dataset("pose3d", data=np.zeros((3, J, 3), np.float32))),
         r"pose3d: .*the file has .*float32"),
    ])
    def test_reader_rejects_bad_files(self, good_file, change, expected):
        with h5py.File(good_file, "r+") as handle:
            change(handle)
        with pytest.raises(ValueError, match=expected):
            DatasetReader(good_file)

    def test_reader_checks_the_expected_skeleton(self, good_file):
        other = Skeleton("other17", H36M_17.joints, H36M_17.bones, H36M_17.rest_pose_mm)
        with pytest.raises(ValueError, match="skeleton: expected 'other17', the file has 'h36m17'"):
            DatasetReader(good_file, skeleton=other)

    def test_reader_arguments(self, good_file):
        with DatasetReader(good_file) as reader:
            with pytest.raises(ValueError, match="'ir_x' is not in this file"):
                reader.read("ir_x")
            with pytest.raises(IndexError):
                reader.frame(3)
            with pytest.raises(ValueError, match="batch_size"):
                next(reader.frames(batch_size=0))
            assert reader.frame(-1)["pose3d"].shape == (J, 3)
            assert list(next(reader.frames(fields="bboxes"))) == ["bboxes"]


# --------------------------------------------------------------------------- commit protocol


class CommitFailure(RuntimeError):
    pass


def fail_commit_number(monkeypatch, number: int) -> None:
    """Make the ``number``-th commit (1-based) raise after the chunk's data were written and flushed."""
    original, calls = DatasetWriter._commit, {"count": 0}

    def commit(self, count):
        calls["count"] += 1
        if calls["count"] == number:
            raise CommitFailure("injected failure between writing the data and committing them")
        original(self, count)

    monkeypatch.setattr(DatasetWriter, "_commit", commit)


def record_frames(monkeypatch) -> list[int]:
    """Record the index of every synthetic frame computed."""
    computed, original = [], synthetic.synthetic_scene

    def make_frame(seed, index, num_cameras, num_components):
        computed.append(index)
        return original(seed, index, num_cameras, num_components)

    monkeypatch.setattr(synthetic, "synthetic_scene", make_frame)
    return computed


class TestCommit:
    def test_uncommitted_chunk_is_invisible_and_dropped(self, tmp_path, rng, monkeypatch):
        path = tmp_path / "data.h5"
        chunks = [random_chunk(rng, 4, 4 * i, fields=REQUIRED_FIELDS) for i in range(3)]
        fail_commit_number(monkeypatch, 2)
        with pytest.raises(CommitFailure), DatasetWriter(path, C, None, K, chunk_frames=4) as writer:
            for chunk in chunks:
                writer.append(chunk)
        with h5py.File(path, "r") as handle:  # the second chunk's data are in the file ...
            assert handle["heatmaps"].shape[0] == 8 and handle.attrs["frames_committed"] == 4
        with DatasetReader(path) as reader:  # ... but do not count
            assert len(reader) == 4 and reader.read("heatmaps").shape[0] == 4
            assert len(list(reader.frames(batch_size=3))) == 2
        monkeypatch.undo()
        with DatasetWriter(path, C, None, K, mode="a") as writer:
            assert len(writer) == 4
        with h5py.File(path, "r") as handle:
            assert all(handle[name].shape[0] == 4 for name in handle)  # truncated on reopening
        with DatasetWriter(path, C, None, K, mode="a") as writer:
            writer.append(chunks[1])
            writer.append(chunks[2])
        with DatasetReader(path) as reader:
            want = concatenate(chunks)
            for name in REQUIRED_FIELDS:
                assert_exact(reader.read(name), want[name], name)

    def test_build_interrupted_between_data_and_commit_resumes_identically(self, tmp_path, monkeypatch):
        frames, chunk, seed = 32, 8, 11
        one_go = build_synthetic_dataset(tmp_path / "one_go.h5", frames, 2, seed, chunk=chunk, progress=False)
        path = tmp_path / "resumed.h5"
        fail_commit_number(monkeypatch, 3)
        with pytest.raises(CommitFailure):
            build_synthetic_dataset(path, frames, 2, seed, chunk=chunk, progress=False)
        with h5py.File(path, "r") as handle:
            assert handle["ir_x"].shape[0] == 24  # the third chunk is written, not committed
        with DatasetReader(path) as reader:
            assert len(reader) == 16 and not reader.complete
        monkeypatch.undo()
        computed = record_frames(monkeypatch)
        build_synthetic_dataset(path, frames, 2, seed, chunk=chunk, progress=False)
        assert computed == list(range(16, frames))  # committed frames kept, not recomputed
        assert_same_dataset(path, one_go)

    def test_build_killed_with_sigkill_resumes_identically(self, tmp_path, monkeypatch):
        """A real kill: the build runs in a subprocess, SIGKILLed once some chunks are committed."""
        frames, chunk, cameras, seed = 240, 8, 3, 5
        path = tmp_path / "killed.h5"
        code = (
            "from metapose_geom.datasets import build_synthetic_dataset\n"
            f"build_synthetic_dataset({str(path)!r}, {frames}, {cameras}, {seed}, chunk={chunk}, progress=False)\n"
        )
        process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
        deadline, committed = time.monotonic() + 120, 0
        try:
            while committed < 3 * chunk:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "the build did not commit three chunks in time"
                try:
                    committed = committed_frames(path)
                except (OSError, KeyError, ValueError):  # not created yet, or caught mid-write
                    pass
                time.sleep(0.002)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            process.stderr.close()
        assert process.returncode == -signal.SIGKILL
        with DatasetReader(path) as reader:
            kept = len(reader)
            prefix = {name: reader.read(name) for name in reader.fields}
        assert 3 * chunk <= kept < frames and kept % chunk == 0, kept
        computed = record_frames(monkeypatch)
        build_synthetic_dataset(path, frames, cameras, seed, chunk=chunk, progress=False)
        assert computed == list(range(kept, frames))
        one_go = build_synthetic_dataset(tmp_path / "one_go.h5", frames, cameras, seed, chunk=chunk, progress=False)
        assert_same_dataset(path, one_go)
        with DatasetReader(path) as reader:  # the frames from before the kill are the ones kept
            for name, values in prefix.items():
                assert_exact(reader.read(name, 0, kept), values, name)


# --------------------------------------------------------------------------- files held by others


@contextmanager
def held_elsewhere(code: str):
    """Run ``code`` (which opens a file and keeps it open) in another process until the block ends."""
    script = f"import sys\n{code}\nprint('ready', flush=True)\nsys.stdin.read()\n"
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        yield
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        process.stdout.close()
        process.stderr.close()


def folder_listing(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` and its bytes."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


class TestFilesHeldByOthers:
    """A build never moves aside, truncates or rebuilds a valid file someone holds or that cannot be
    written: it stops with "in use" or "not writable" and the folder stays as it was, byte for byte."""

    FRAMES, CAMERAS, SEED = 2, 2, 7

    @pytest.fixture
    def partial(self, tmp_path) -> Path:
        """A valid file with 2 of the frames; the test asks for 4, so the build must open it for writing."""
        path = tmp_path / "set.h5"
        build_synthetic_dataset(path, self.FRAMES, self.CAMERAS, self.SEED, progress=False)
        return path

    def grow(self, path: Path) -> Path:
        return build_synthetic_dataset(path, 2 * self.FRAMES, self.CAMERAS, self.SEED, progress=False)

    def assert_refused(self, path: Path, expected: str, exception=OSError) -> None:
        before = folder_listing(path.parent)
        with pytest.raises(exception, match=expected) as caught:
            self.grow(path)
        assert str(path) in str(caught.value)
        assert folder_listing(path.parent) == before  # nothing moved aside, created or changed

    def test_a_reader_in_another_process(self, partial):
        with held_elsewhere(f"from metapose_geom.datasets import DatasetReader\nr = DatasetReader({str(partial)!r})"):
            self.assert_refused(partial, "in use", BlockingIOError)
        self.grow(partial)  # free again: the build resumes
        assert committed_frames(partial) == 2 * self.FRAMES

    def test_a_reader_in_this_process(self, partial):
        with DatasetReader(partial) as reader:
            self.assert_refused(partial, "in use", BlockingIOError)
            assert len(reader) == self.FRAMES
        self.grow(partial)
        assert committed_frames(partial) == 2 * self.FRAMES

    def test_a_second_run_writing_it(self, partial):
        # what a running build holds: the file open for writing, with HDF5's lock
        with held_elsewhere(f"import h5py\nf = h5py.File({str(partial)!r}, 'r+')"):
            self.assert_refused(partial, "in use", BlockingIOError)

    def test_a_second_run_creating_it(self, tmp_path):
        # another run is building the new file under its temporary name and holds it (HDF5's lock);
        # truncating it would destroy that run's work
        path = tmp_path / "new.h5"
        temporary = tmp_path / "new.h5.creating"
        code = f"import h5py\nf = h5py.File({str(temporary)!r}, 'w')\nf.attrs['built'] = 'by the other run'\nf.flush()"
        with held_elsewhere(code):
            before = folder_listing(tmp_path)
            with pytest.raises(BlockingIOError, match="in use"):
                build_synthetic_dataset(path, 2, 2, 0, progress=False)
            assert folder_listing(tmp_path) == before and not path.exists()
        temporary.unlink()  # what the other run, had it finished, would have renamed

    def build_code(self, path) -> str:
        """A Python program that builds ``path`` and prints the OSError it meets (type and message)."""
        return ("from metapose_geom.datasets import build_synthetic_dataset\n"
                "try:\n"
                f"    build_synthetic_dataset({str(path)!r}, 4, 2, {self.SEED}, progress=False)\n"
                "except OSError as error:\n"
                "    print(type(error).__name__, error)\n")

    def test_a_write_protected_file(self, partial):
        """chmod does not stop root: the build runs in a user namespace without a mapping for root
        (``unshare --user``), where the file's owner bits (r--) apply; its folder stays writable."""
        if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"]).returncode:
            pytest.skip("needs unshare --user")
        partial.chmod(0o444)
        before = folder_listing(partial.parent)
        code = self.build_code(partial)
        done = subprocess.run(["unshare", "--user", sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300)
        assert done.stdout.startswith("PermissionError"), (done.stdout, done.stderr)
        assert f"{partial}: not writable" in done.stdout
        assert folder_listing(partial.parent) == before

    def test_a_file_on_a_read_only_file_system(self, partial):
        """The folder is bind-mounted read-only in the subprocess (read_only.py)."""
        if not read_only_available():
            pytest.skip("needs unshare and mount for a read-only bind")
        before = folder_listing(partial.parent)
        code = self.build_code(partial)
        done = run_read_only(partial.parent, [sys.executable, "-c", code])
        assert done.stdout.startswith("PermissionError"), (done.stdout, done.stderr)
        assert f"{partial}: not writable" in done.stdout and "Read-only file system" in done.stdout
        assert folder_listing(partial.parent) == before

    def test_damaged_files_are_set_aside_without_overwriting_earlier_ones(self, tmp_path):
        path = tmp_path / "set.h5"
        for number, aside in enumerate(("set.h5.corrupt", "set.h5.corrupt.1", "set.h5.corrupt.2")):
            path.write_bytes(f"damaged file number {number}".encode())
            with pytest.warns(RuntimeWarning, match=f"moved to {re.escape(str(tmp_path / aside))}"):
                build_synthetic_dataset(path, 2, 2, 0, progress=False)
            assert committed_frames(path) == 2
        for number, aside in enumerate(("set.h5.corrupt", "set.h5.corrupt.1", "set.h5.corrupt.2")):
            assert (tmp_path / aside).read_bytes() == f"damaged file number {number}".encode()

    def test_a_truncated_file_is_damaged(self, partial):
        data = partial.read_bytes()
        partial.write_bytes(data[: len(data) // 2])
        with pytest.warns(RuntimeWarning, match="not a readable HDF5 file"):
            self.grow(partial)
        assert committed_frames(partial) == 2 * self.FRAMES
        assert (partial.parent / "set.h5.corrupt").read_bytes() == data[: len(data) // 2]

    def test_a_failed_creation_leaves_nothing(self, tmp_path, monkeypatch):
        def fail(*args, **kwargs):
            raise OSError("injected: disk full while creating the datasets")

        monkeypatch.setattr(h5py.Group, "create_dataset", fail)
        with pytest.raises(OSError, match="injected"):
            build_synthetic_dataset(tmp_path / "set.h5", 2, 2, 0, progress=False)
        assert list(tmp_path.iterdir()) == []

    def test_a_stale_creating_file_is_reused(self, tmp_path):
        # a build killed while creating leaves new.h5.creating, held by nobody
        (tmp_path / "new.h5.creating").write_bytes(b"half-created")
        build_synthetic_dataset(tmp_path / "new.h5", 2, 2, 0, progress=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["new.h5"] and committed_frames(tmp_path / "new.h5") == 2


class TestOneWriterPerFile:
    """Two writers of one file in one process would each append from their own count and overwrite
    each other's committed frames: the second is refused, whatever its mode or spelling of the path."""

    def test_a_second_writer_is_refused(self, tmp_path, rng, monkeypatch):
        path = tmp_path / "data.h5"
        chunks = [random_chunk(rng, 2, 2 * i, fields=REQUIRED_FIELDS) for i in range(3)]
        with DatasetWriter(path, C, None, K) as first:
            first.append(chunks[0])
            monkeypatch.chdir(tmp_path)
            (tmp_path / "link.h5").symlink_to(path)
            for other, mode in [(path, "a"), (path, "w"), (path, "x"), (Path("data.h5"), "a"), (Path("link.h5"), "a")]:
                with pytest.raises(BlockingIOError, match=f"{re.escape(str(other))}: in use by another DatasetWriter"):
                    DatasetWriter(other, C, None, K, mode=mode)
            first.append(chunks[1])
        with DatasetWriter(path, C, None, K, mode="a") as again:  # free once the first is closed
            assert len(again) == 4
            again.append(chunks[2])
        with DatasetReader(path) as reader:
            for name in REQUIRED_FIELDS:
                assert_exact(reader.read(name), concatenate(chunks)[name], name)

    def test_writers_of_different_files_coexist(self, tmp_path, rng):
        with DatasetWriter(tmp_path / "a.h5", C, None, K) as a, DatasetWriter(tmp_path / "b.h5", C, None, K) as b:
            a.append(random_chunk(rng, 1, fields=REQUIRED_FIELDS))
            b.append(random_chunk(rng, 2, fields=REQUIRED_FIELDS))
        assert committed_frames(tmp_path / "a.h5") == 1 and committed_frames(tmp_path / "b.h5") == 2

    def test_a_writer_that_failed_to_open_does_not_hold_the_path(self, tmp_path):
        path = tmp_path / "data.h5"
        DatasetWriter(path, C, None, K).close()
        with pytest.raises(ValueError, match="num_cameras"):
            DatasetWriter(path, C + 1, None, K, mode="a")
        DatasetWriter(path, C, None, K, mode="a").close()


# --------------------------------------------------------------------------- synthetic content


class TestSynthetic:
    @pytest.fixture(scope="class")
    @classmethod
    def built(cls, tmp_path_factory):
        path = tmp_path_factory.mktemp("synthetic") / "set.h5"
        return build_synthetic_dataset(path, 12, 3, 21, split="test", chunk=5, progress=False)

    def test_fields_come_from_the_scenes(self, built):
        scenes = synth.make_scenes(12, 3, seed=21)
        with DatasetReader(built) as reader:
            assert len(reader) == 12 and reader.fields == ALL and reader.complete
            assert reader.attrs["seed"] == 21 and reader.attrs["split"] == "test"
            data = {name: reader.read(name) for name in reader.fields}
        for i, scene in enumerate(scenes):
            for name, value in scene_fields(scene).items():  # what they hold: TestScenes
                assert_exact(data[name][i], value, name)
            assert data["keys"][i, 2] == f"synthetic/seed21/frame{i:07d}/cam2"

    def test_solver_fields_equal_solve_on_the_stored_views(self, built):
        with DatasetReader(built) as reader:
            for i in (0, 7, 11):
                frame = reader.frame(i)
                for method in ("s1", "ir"):
                    solution = mg.solve(reader.views(i), method=method)
                    np.testing.assert_allclose(frame[f"{method}_x"], solution.x, rtol=1e-12, atol=1e-12)
                    np.testing.assert_allclose(frame[f"{method}_pose3d"], solution.pose3d, rtol=1e-12, atol=1e-12)
                    assert frame[f"{method}_objective"] == pytest.approx(solution.objective, rel=1e-12)
                np.testing.assert_allclose(frame["ir_reprojection"], solution.reprojection, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(frame["ir_cam_rot"], solution.cameras.rotation, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(frame["ir_cam_scale"], solution.cameras.scale, rtol=1e-12)
                np.testing.assert_allclose(frame["ir_cam_shift"], solution.cameras.shift, rtol=1e-12, atol=1e-12)
                assert frame["ir_objective"] < frame["s1_objective"]

    def test_a_frame_depends_on_its_index_alone(self, built):
        middle = synthetic_frames(21, 4, 9, 3)
        with DatasetReader(built) as reader:
            for name in reader.fields:
                assert_exact(reader.read(name, 4, 9), middle[name], name)

    def test_growing_a_file_equals_building_it_larger(self, tmp_path, built):
        path = tmp_path / "grown.h5"
        build_synthetic_dataset(path, 5, 3, 21, split="test", chunk=5, progress=False)
        build_synthetic_dataset(path, 12, 3, 21, split="test", chunk=4, progress=False)
        assert_same_dataset(path, built)

    def test_other_parameters_do_not_resume(self, tmp_path, built):
        with pytest.raises(ValueError, match="attribute seed"):
            build_synthetic_dataset(built, 12, 3, 22, split="test", progress=False)
        with pytest.raises(ValueError, match="num_cameras"):
            build_synthetic_dataset(built, 12, 4, 21, split="test", progress=False)
        with pytest.raises(ValueError, match="frames_planned"):
            build_synthetic_dataset(built, 6, 3, 21, split="test", progress=False)
        path = tmp_path / "over.h5"
        build_synthetic_dataset(path, 3, 3, 22, progress=False)
        build_synthetic_dataset(path, 2, 3, 23, overwrite=True, progress=False)
        with DatasetReader(path) as reader:
            assert len(reader) == 2 and reader.attrs["seed"] == 23

    def test_unreadable_file_is_set_aside_and_rebuilt(self, tmp_path):
        path = tmp_path / "broken.h5"
        path.write_bytes(b"not an hdf5 file")
        with pytest.warns(RuntimeWarning, match="not a readable HDF5 file"):
            build_synthetic_dataset(path, 2, 2, 0, progress=False)
        assert (tmp_path / "broken.h5.corrupt").read_bytes() == b"not an hdf5 file"
        assert committed_frames(path) == 2

    def test_make_datasets_names_and_seeds(self, tmp_path):
        paths = make_datasets(tmp_path, train_frames=3, test_frames=2, cameras=(2, 4), seed=3, chunk=2,
                              progress=False)
        names = [p.name for p in paths]
        assert names == ["synthetic_train_2cam.h5", "synthetic_train_4cam.h5", "synthetic_test_2cam.h5",
                         "synthetic_test_4cam.h5"]
        assert split_seed(3, "train") != split_seed(3, "test")
        for path, split, frames in zip(paths, ["train"] * 2 + ["test"] * 2, [3, 3, 2, 2]):
            with DatasetReader(path) as reader:
                assert len(reader) == frames and reader.attrs["seed"] == split_seed(3, split)
        assert make_datasets(tmp_path / "none", train_frames=0, test_frames=0, progress=False) == []
        with pytest.raises(ValueError, match="cameras"):
            make_datasets(tmp_path, cameras=(9,), progress=False)
        with pytest.raises(ValueError, match="split"):
            split_seed(0, "valid")


# --------------------------------------------------------------------------- scenes <-> fields


class TestScenes:
    EXACT = ("pose3d", "rotation", "intrinsics", "distortion", "image_size", "boxes", "mixtures", "mono3d",
             "occluded", "confused")
    DERIVED = ("translation", "pose3d_cam", "pose2d")  # through -R^T t, box units and back

    @pytest.mark.parametrize("cameras, seed", [(2, 0), (4, 1), (6, 2)])
    def test_scene_to_fields_to_scene(self, cameras, seed):
        scene = synth.make_scene(seed, num_cameras=cameras)
        fields = scene_fields(scene)
        assert tuple(fields) == SCENE_FIELDS
        rebuilt = scene_from_fields(fields, scene.skeleton)
        for name in self.EXACT:
            assert_exact(getattr(rebuilt, name), getattr(scene, name), name)
        for name in self.DERIVED:
            np.testing.assert_allclose(getattr(rebuilt, name), getattr(scene, name), rtol=1e-12, atol=1e-9,
                                       err_msg=name)
        again = scene_fields(rebuilt)
        for name in SCENE_FIELDS:
            np.testing.assert_allclose(again[name], fields[name], rtol=1e-12, atol=1e-9, err_msg=name)

    def test_fields_are_the_scene_and_its_mixture_mean(self):
        scene = synth.make_scene(3, num_cameras=3)
        fields = scene_fields(scene)
        for name, value in [
            ("heatmaps", scene.mixtures), ("pose3d_epi_pred", scene.mono3d), ("bboxes", scene.boxes),
            ("pose3d", scene.pose3d), ("cam_rot", scene.rotation), ("cam_intr", scene.intrinsics),
            ("cam_kd", scene.distortion), ("cam_image_size", scene.image_size),
            ("pose2d_gt", scene.pose2d_box_units()), ("pose2d_repr", scene.weak_labels()),
            ("occluded", scene.occluded), ("confused", scene.confused),
        ]:
            assert_exact(fields[name], value, name)
        weights = scene.mixtures[..., 0]
        mean = (weights[..., None] * scene.mixtures[..., 1:3]).sum(axis=2) / weights.sum(axis=2)[..., None]
        np.testing.assert_allclose(fields["pose2d_pred"], mean, rtol=1e-14, atol=1e-14)
        in_camera = (scene.pose3d[None] - fields["cam_pose3d"][:, None]) @ np.swapaxes(scene.rotation, 1, 2)
        np.testing.assert_allclose(in_camera, scene.pose3d_cam, rtol=0, atol=1e-8)

    def test_a_subset_of_cameras_is_the_scene_of_those_cameras(self):
        scene = synth.make_scene(4, num_cameras=4)
        fields = scene_fields(scene)
        full, subset = scene_from_fields(fields), scene_from_fields(fields, cameras=(1, 3))
        for name in self.EXACT[1:] + self.DERIVED:
            np.testing.assert_array_equal(getattr(subset, name), getattr(full, name)[[1, 3]], err_msg=name)
        np.testing.assert_allclose(subset.gt_mono3d(), full.gt_mono3d()[[1, 3]], rtol=1e-12, atol=1e-12)

    def test_missing_optional_fields(self):
        scene = synth.make_scene(5, num_cameras=2)
        fields = {k: v for k, v in scene_fields(scene).items() if k not in ("occluded", "confused", "cam_image_size")}
        rebuilt = scene_from_fields(fields)
        assert not rebuilt.occluded.any() and rebuilt.occluded.shape == (2, 17) and not rebuilt.confused.any()
        np.testing.assert_array_equal(rebuilt.image_size, 2 * scene.intrinsics[:, 2:])


# --------------------------------------------------------------------------- what reading imports


class TestLightReading:
    @pytest.fixture(scope="class")
    @classmethod
    def small_file(cls, tmp_path_factory):
        path = tmp_path_factory.mktemp("light") / "data.h5"
        with DatasetWriter(path, C, ("pose3d",), K) as writer:
            writer.append(random_chunk(np.random.default_rng(0), 3, fields=REQUIRED_FIELDS + ("pose3d",)))
        return path

    def run(self, code: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return out.stdout.split()

    def test_reading_needs_neither_the_solver_nor_the_generator(self, small_file):
        # the package's top level loads the solver and the generator on first use only
        code = (
            "import sys, metapose_geom.datasets as d\n"
            f"with d.DatasetReader({str(small_file)!r}) as reader:\n"
            "    reader.read('heatmaps', 0, 2); reader.views(1)\n"
            "print(*sorted(sys.modules))\n"
        )
        loaded = self.run(code)
        assert "metapose_geom.datasets.hdf5" in loaded
        for name in ("metapose_geom.solver", "metapose_geom.synth", "metapose_geom.datasets.synthetic",
                     "metapose_geom.datasets.scenes", "tqdm"):
            assert name not in loaded, name

    def test_the_synthetic_names_load_on_first_use(self, small_file):
        code = (
            "import sys, metapose_geom.datasets as d\n"
            f"d.DatasetReader({str(small_file)!r}).read('bboxes')\n"
            "print('synthetic' if 'metapose_geom.datasets.synthetic' in sys.modules else 'light')\n"
            "from metapose_geom.datasets import make_datasets, synthetic_frames, build_synthetic_dataset\n"
            "print('metapose_geom.datasets.synthetic' in sys.modules, d.split_seed(1, 'test'))\n"
        )
        assert self.run(code) == ["light", "True", "2000001"]
        with pytest.raises(AttributeError, match="no attribute 'nothing'"):
            datasets.nothing  # noqa: B018


class TestCli:
    def test_make_dataset(self, tmp_path, capsys):
        argv = ["make-dataset", "--out", str(tmp_path), "--train-frames", "6", "--test-frames", "3",
                "--cameras", "2", "3", "--chunk", "4", "--threads", "1", "--no-progress"]
        assert cli.main(argv) == 0
        output = capsys.readouterr().out
        assert "4 file(s)" in output and "synthetic_test_3cam.h5: 3 frames, 3 cameras" in output
        assert committed_frames(tmp_path / "synthetic_train_2cam.h5") == 6
        assert cli.main(argv) == 0  # a finished build is left as it is
        assert committed_frames(tmp_path / "synthetic_train_3cam.h5") == 6

    @pytest.mark.parametrize("extra", [["--train-frames", "-1"], ["--cameras", "1"], ["--chunk", "0"]])
    def test_make_dataset_rejects_bad_arguments(self, tmp_path, extra, capsys):
        assert cli.main(["make-dataset", "--out", str(tmp_path / "out"), *extra]) == 2
        assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "out").exists()  # more: test_cli.py

    def test_make_dataset_needs_out(self):
        with pytest.raises(SystemExit):  # argparse: a required option
            cli.main(["make-dataset"])

    def test_script_calls_the_same_command(self, tmp_path):
        script = os.path.join(os.path.dirname(__file__), "..", "python", "make_dataset.py")
        out = subprocess.run([sys.executable, script, "--out", str(tmp_path), "--train-frames", "2",
                              "--test-frames", "0", "--cameras", "2", "--no-progress"],
                             capture_output=True, text=True, check=True)
        assert "1 file(s)" in out.stdout
        assert committed_frames(tmp_path / "synthetic_train_2cam.h5") == 2
