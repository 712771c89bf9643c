"""Fixtures and hooks of the kernel benchmarks.

Run them explicitly (the repository's ``testpaths`` is ``tests``, so ``python -m pytest`` alone does
not collect this directory); see ``benchmarks/README.md`` for the exact command and the method.

* ``single_thread`` (autouse): the compiled core runs on one thread unless a test says otherwise,
  and the previous count is restored afterwards.
* ``numpy_kernels``: for every kernel name, the numpy reference to time it against and where it
  came from. ``tests/reference.py`` (the test suite's references) is preferred; a kernel it does
  not provide falls back to ``benchmarks/_numpy_kernels.py``.
* ``pytest_benchmark_update_json``: drops the per-round timings of the kernel benchmarks (tens of
  thousands of rounds for the fast kernels) and keeps their statistics.
* ``pytest_benchmark_update_machine_info``: adds numpy (version and BLAS), core and thread counts,
  the load average and the reference sources to the metadata saved with the JSON, and torch's
  version and default thread count when a benchmark loaded torch (the refiner's torch baseline;
  the kernel benchmarks never import it).

The refiner benchmarks (``test_refiner.py``) use the same ``single_thread`` fixture and metadata;
their inputs and baselines (``refiner_numpy.py``, ``refiner_torch.py``) are their own.
"""

from __future__ import annotations

import os
import sys

# numpy's BLAS must not spread over the cores behind our back: the comparison is single-thread on
# both sides. This only takes effect if numpy has not been imported yet; the metadata records it.
_NUMPY_IMPORTED_BEFORE_CONFTEST = "numpy" in sys.modules
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import importlib.util  # noqa: E402
import platform  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import _numpy_kernels  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
TEST_REFERENCE_PATH = REPOSITORY / "tests" / "reference.py"
FALLBACK_SOURCE = "benchmarks/_numpy_kernels.py"
TEST_REFERENCE_SOURCE = "tests/reference.py"

KERNEL_NAMES = (
    "rot6d_to_matrix",
    "rot6d_to_matrix_with_jacobian",
    "matrix_to_rot6d",
    "rodrigues_to_matrix",
    "matrix_to_rodrigues",
    "project_weak",
    "project_weak_with_jacobian",
    "project_perspective",
    "undistort_points",
    "mixture_log_likelihood",
    "mixture_log_likelihood_with_gradient",
    "procrustes",
    "pmpjpe",
    "nmpjpe",
    "pck",
)

# Kernels whose tests/reference.py version is right for testing but not a fair speed baseline:
# there the benchmarks time the numpy a user would write instead. Maps name -> reason.
_SKIP_TEST_REFERENCE: dict[str, str] = {
    "rot6d_to_matrix_with_jacobian": "tests/reference.py takes the Jacobian by complex step (6 complex "
    "evaluations); the benchmark times the closed-form numpy Jacobian",
    "matrix_to_rot6d": "tests/reference.py returns a view of the input (no work at all, ~0.7 us at any "
    "size); the benchmark copies it into a new array, as the core returns one",
    "undistort_points": "tests/reference.py runs a fixed 50 Newton steps; the benchmark times Newton "
    "stopping at convergence (5 steps on the benchmark's cameras)",
}

_load_average_at_start: tuple[float, float, float] | None = None


def _load_test_reference() -> tuple[ModuleType | None, str]:
    """Import tests/reference.py under a private name; return (module or None, status)."""
    if not TEST_REFERENCE_PATH.exists():
        return None, "absent"
    spec = importlib.util.spec_from_file_location("_metapose_benchmark_test_reference", TEST_REFERENCE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(TEST_REFERENCE_PATH.parent))  # in case it imports its siblings
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a broken reference must not hide behind the fall-back silently
        return None, f"failed to import: {type(error).__name__}: {error}"
    finally:
        sys.path.remove(str(TEST_REFERENCE_PATH.parent))
    return module, "loaded"


_TEST_REFERENCE, _TEST_REFERENCE_STATUS = _load_test_reference()


def resolve_numpy_kernels() -> dict[str, tuple[Callable, str]]:
    """name -> (numpy function, source file), preferring tests/reference.py."""
    resolved: dict[str, tuple[Callable, str]] = {}
    for name in KERNEL_NAMES:
        function = getattr(_TEST_REFERENCE, name, None) if _TEST_REFERENCE is not None else None
        if callable(function) and name not in _SKIP_TEST_REFERENCE:
            resolved[name] = (function, TEST_REFERENCE_SOURCE)
        else:
            resolved[name] = (getattr(_numpy_kernels, name), FALLBACK_SOURCE)
    return resolved


@pytest.fixture(scope="session")
def numpy_kernels() -> dict[str, tuple[Callable, str]]:
    return resolve_numpy_kernels()


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run the compiled core on one thread; tests comparing thread counts set their own."""
    import metapose_geom

    previous = metapose_geom.get_num_threads()
    metapose_geom.set_num_threads(1)
    try:
        yield
    finally:
        metapose_geom.set_num_threads(previous)


def pytest_sessionstart(session: pytest.Session) -> None:
    global _load_average_at_start
    _load_average_at_start = os.getloadavg()


def _numpy_blas() -> object:
    try:
        config = np.show_config(mode="dicts")  # numpy >= 2
        return config["Build Dependencies"]["blas"]
    except Exception as error:  # older numpy or a changed layout: record why, do not fail the run
        return f"unavailable ({type(error).__name__})"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    try:
        import metapose_geom

        core = {
            "version": metapose_geom.__version__,
            "default_threads": _DEFAULT_CORE_THREADS,
            "path": str(Path(metapose_geom.__file__).parent),
        }
    except ImportError as error:
        core = {"error": str(error)}
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    machine_info["metapose_geom"] = core
    machine_info["numpy"] = {"version": np.__version__, "blas": _numpy_blas()}
    machine_info["cores"] = {"os_cpu_count": os.cpu_count(), "usable": affinity}
    machine_info["threads"] = {
        "core_in_kernel_groups": 1,
        "core_in_thread_groups": [1, 2],
        "numpy_blas_env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "numpy_imported_before_env_was_set": _NUMPY_IMPORTED_BEFORE_CONFTEST,
    }
    machine_info["load_average"] = {"at_start": _load_average_at_start, "at_end": os.getloadavg()}
    machine_info["python_build"] = platform.python_build()
    torch_module = sys.modules.get("torch")  # recorded only if a benchmark imported it
    if torch_module is not None:
        machine_info["torch"] = {
            "version": torch_module.__version__,
            "default_threads": torch_module.get_num_threads(),
        }
    machine_info["numpy_reference"] = {
        "tests/reference.py": _TEST_REFERENCE_STATUS,
        "kernels": {name: source for name, (_, source) in resolve_numpy_kernels().items()},
        "not_taken_from_tests_reference": dict(_SKIP_TEST_REFERENCE),
    }


def strip_round_data(output_json: dict) -> int:
    """Drop the per-round timings of the kernel benchmarks from a pytest-benchmark JSON, in place.

    The fast kernels run tens of thousands of rounds, which would make the JSON ~11 MB; the
    statistics (min, max, mean, median, IQR, rounds...) are kept. Other benchmarks sharing this
    conftest (the refiner's) keep their data; the single-frame ones (tens of thousands of rounds too)
    and the scaling ones (many configurations) are stripped like the kernels. Returns how many benchmarks were stripped.
    """
    stripped = 0
    for bench in output_json.get("benchmarks", []):
        kind = bench.get("extra_info", {}).get("kind")
        if kind in ("kernel", "threads", "single frame", "scaling") and "data" in bench.get("stats", {}):
            del bench["stats"]["data"]
            stripped += 1
    if stripped:
        output_json.setdefault("notes", []).append(
            f"per-round data dropped for {stripped} kernel benchmarks (statistics kept); see benchmarks/conftest.py"
        )
    return stripped


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    strip_round_data(output_json)


def _default_core_threads() -> int | None:
    try:
        import metapose_geom

        return metapose_geom.get_num_threads()
    except ImportError:
        return None


_DEFAULT_CORE_THREADS = _default_core_threads()
