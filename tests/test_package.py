"""The package itself: import, version, threads, determinism across thread counts."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import metapose_geom
from metapose_geom import geometry, metrics

import reference as ref
from conftest import SEED, assert_close, random_mixtures, random_rot6d, random_rotations
from signatures import CORE, DIMS, PUBLIC, as_outputs


class TestImport:
    def test_import_and_version(self):
        assert isinstance(metapose_geom.__version__, str)
        assert metapose_geom.__version__ == metadata.version("metapose-geom")

    def test_public_names(self):
        for name in geometry.__all__:
            assert hasattr(geometry, name), name
        for name in metrics.__all__:
            assert hasattr(metrics, name), name
        assert metapose_geom.set_num_threads is geometry.set_num_threads
        assert metapose_geom.get_num_threads is geometry.get_num_threads

    def test_compiled_core_is_present(self):
        from metapose_geom import _core

        for name in (
            "rot6d_to_matrix", "rot6d_to_matrix_with_jacobian", "matrix_to_rot6d", "rodrigues_to_matrix",
            "matrix_to_rodrigues", "project_weak", "project_weak_with_jacobian", "project_perspective",
            "project_perspective_with_jacobian", "undistort_points", "mixture_log_likelihood",
            "mixture_log_likelihood_with_gradient", "procrustes", "pmpjpe_per_joint", "nmpjpe_per_joint",
            "set_num_threads", "get_num_threads",
        ):
            assert callable(getattr(_core, name)), name

    def test_import_stays_light(self):
        """Heavy optional dependencies are not imported by `import metapose_geom` (style.md, 7)."""
        code = (
            "import sys, metapose_geom\n"
            "heavy = {'torch', 'h5py', 'matplotlib', 'numba', 'cv2', 'aniposelib', 'scipy', 'dask'}\n"
            "print(sorted(heavy & set(sys.modules)))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]", out.stdout


class TestThreads:
    def test_default_is_at_least_one(self):
        assert metapose_geom.get_num_threads() >= 1

    @pytest.mark.parametrize("count", [1, 2, 3, 7])
    def test_round_trip(self, count, restore_threads):
        metapose_geom.set_num_threads(count)
        assert metapose_geom.get_num_threads() == count
        assert isinstance(metapose_geom.get_num_threads(), int)

    def test_numpy_integer_is_accepted(self, restore_threads):
        metapose_geom.set_num_threads(np.int64(2))
        assert metapose_geom.get_num_threads() == 2

    def test_zero_means_one_per_core(self, restore_threads):
        metapose_geom.set_num_threads(0)
        assert metapose_geom.get_num_threads() >= 1

    def test_rejected_value_leaves_the_count_alone(self, restore_threads):
        metapose_geom.set_num_threads(2)
        with pytest.raises(ValueError, match="count"):
            metapose_geom.set_num_threads(-1)
        assert metapose_geom.get_num_threads() == 2


def _large_calls(rng):
    """Large batches of every kernel (enough to be split over threads)."""
    rot6d = random_rot6d(rng, (200_000,))
    points, mixtures = rng.normal(0.5, 0.3, size=(50_000, 2)), random_mixtures(rng, (50_000,), 4)
    pose, cams = rng.normal(size=(4_000, 17, 3)), random_rotations(rng, (4_000, 4))
    scale, shift = rng.uniform(0.5, 2, size=(4_000, 4)), rng.normal(size=(4_000, 4, 3))
    source = rng.normal(size=(20_000, 17, 3))
    target = 1.3 * source @ random_rotations(rng, (20_000,)) + rng.normal(size=(20_000, 17, 3)) * 0.1
    rotvec = rng.normal(size=(100_000, 3))
    return {
        "rot6d_to_matrix": (geometry.rot6d_to_matrix, (rot6d,)),
        "rot6d_to_matrix_with_jacobian": (geometry.rot6d_to_matrix_with_jacobian, (rot6d,)),
        "rodrigues_to_matrix": (geometry.rodrigues_to_matrix, (rotvec,)),
        "mixture_log_likelihood": (geometry.mixture_log_likelihood, (points, mixtures)),
        "mixture_log_likelihood_with_gradient": (geometry.mixture_log_likelihood_with_gradient, (points, mixtures)),
        "project_weak_with_jacobian": (geometry.project_weak_with_jacobian, (pose, cams, scale, shift)),
        "procrustes": (geometry.procrustes, (source, target)),
        "pmpjpe": (metrics.pmpjpe, (source, target)),
        "nmpjpe": (metrics.nmpjpe, (source, target, True)),
    }


class TestThreadDeterminism:
    def test_one_and_two_threads_give_identical_results(self, restore_threads):
        calls = _large_calls(np.random.default_rng(SEED))
        results = {}
        for count in (1, 2):
            metapose_geom.set_num_threads(count)
            results[count] = {name: f(*args) for name, (f, args) in calls.items()}
        for name in calls:
            one, two = results[1][name], results[2][name]
            one = one if isinstance(one, tuple) else (one,)
            two = two if isinstance(two, tuple) else (two,)
            for a, b in zip(one, two):
                np.testing.assert_array_equal(a, b, err_msg=name)

    def test_threaded_large_batches_match_the_reference(self, restore_threads):
        """Every item of a batch split over threads is right (no chunk skipped or written twice)."""
        metapose_geom.set_num_threads(2)
        rng = np.random.default_rng(SEED)
        rot6d = random_rot6d(rng, (200_000,))
        assert_close(geometry.rot6d_to_matrix(rot6d), ref.rot6d_to_matrix(rot6d))
        points, mixtures = rng.normal(0.5, 0.3, size=(50_000, 2)), random_mixtures(rng, (50_000,), 4)
        value, gradient = geometry.mixture_log_likelihood_with_gradient(points, mixtures)
        expected_value, expected_gradient = ref.mixture_log_likelihood_with_gradient(points, mixtures)
        assert_close(value, expected_value)
        assert_close(gradient, expected_gradient)
        source, target = rng.normal(size=(2, 30_000, 17, 3))
        for got, want in zip(geometry.procrustes(source, target), ref.procrustes(source, target)):
            assert_close(np.asarray(got), want, rtol=1e-9)

    def test_concurrent_python_threads(self):
        """Calls from several Python threads at once (the GIL is released) give the serial results."""
        rng = np.random.default_rng(SEED)
        chunks = [random_rot6d(rng, (20_000,)) for _ in range(8)]
        serial = [geometry.rot6d_to_matrix_with_jacobian(c) for c in chunks]
        with ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(geometry.rot6d_to_matrix_with_jacobian, chunks))
        for (r1, j1), (r2, j2) in zip(serial, parallel):
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(j1, j2)


def _layouts(array: np.ndarray) -> dict[str, np.ndarray]:
    strided = np.repeat(array, 2, axis=-1)[..., ::2]
    readonly = array.copy()
    readonly.setflags(write=False)
    return {"strided": strided, "fortran": np.asfortranarray(array), "readonly": readonly}


class TestInputLayouts:
    """Strides, Fortran order and read-only buffers change nothing: the same numbers come out,
    from the raw core (which copies any layout into a C-contiguous float64 buffer) and from the
    wrappers alike."""

    @pytest.mark.parametrize("signature", CORE + PUBLIC, ids=[s.id for s in CORE + PUBLIC])
    @pytest.mark.parametrize("layout", ["strided", "fortran", "readonly"])
    def test_layout_does_not_change_the_result(self, signature, layout):
        rng = np.random.default_rng(SEED)
        arrays = signature.make(rng, (2, 3), DIMS)
        expected = as_outputs(signature, signature.call([np.ascontiguousarray(a) for a in arrays]))
        changed = [_layouts(np.ascontiguousarray(a))[layout] for a in arrays]
        assert any(not a.flags.c_contiguous or not a.flags.writeable for a in changed)
        got = as_outputs(signature, signature.call(changed))
        for g, w in zip(got, expected):
            np.testing.assert_array_equal(g, w)

    def test_big_endian_through_the_wrapper(self, rng):
        rot6d = random_rot6d(rng, (5,))
        np.testing.assert_array_equal(geometry.rot6d_to_matrix(rot6d.astype(">f8")), geometry.rot6d_to_matrix(rot6d))

    def test_nested_lists_through_the_wrapper(self, rng):
        rot6d = random_rot6d(rng, (5,))
        np.testing.assert_array_equal(geometry.rot6d_to_matrix(rot6d.tolist()), geometry.rot6d_to_matrix(rot6d))


class TestReadme:
    """README.md's Python examples run as written (a fresh interpreter each, in a scratch folder)."""

    README = Path(__file__).resolve().parents[1] / "README.md"

    @staticmethod
    def _blocks() -> list[str]:
        return re.findall(r"```python\n(.*?)```", TestReadme.README.read_text(encoding="utf-8"), flags=re.S)

    def test_readme_has_the_solve_example(self):
        blocks = self._blocks()
        assert blocks and "mg.solve(views" in blocks[0] and len(blocks[0].strip().splitlines()) <= 14

    @pytest.mark.parametrize("index", range(5))
    def test_example_runs(self, index, tmp_path):
        blocks = self._blocks()
        assert len(blocks) == 5, "README.md's Python examples changed: update this test's range"
        script = tmp_path / f"example_{index}.py"
        script.write_text(blocks[index], encoding="utf-8")
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
