"""Benchmark: the refiner from the portable wheel's modules against the native build, in one session.

The portable build (``METAPOSE_NATIVE=OFF``, how wheels are built) holds one module per
instruction-set level; the native build (the default ``pip install .``) one module built
``-march=native``. This times ``refine`` of each on the refiner benchmark's batch (``test_refiner.py``:
256 frames of ``synth.make_scenes(seed=20240601)``, 4 cameras, 17 joints, K = 4, 100 Keras-form Adam
steps, no bone term), one thread, group ``"portable C=4 B=256"``:

* ``native``: the installed package's core (a native development install);
* ``baseline``, ``x86-64-v3``, ``x86-64-v4``: the wheel's modules, loaded side by side by path
  (``_core_loader.load_level``), each level this CPU runs; ``extra_info["chosen"]`` marks the level
  the wheel imports on this CPU.

The wheel comes from the environment variable METAPOSE_WHEEL (a ``.whl``, e.g. ``.ci/wheel``'s
``dist/ci/wheelhouse/*.whl``); without it the file skips. Before timing, each module's result must
equal the native one: bit for bit where both fuse multiply-adds, else within :data:`TOLERANCE`
(tests/test_build_info.py holds the levels to that).

Ratios to native, from a saved JSON: ``python benchmarks/test_portable.py benchmarks/results/portable.json``.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
from metapose_geom import _core_loader as loader  # noqa: E402

from test_refiner import ADAM, CAMERAS, FRAMES, STEPS, make_batch  # noqa: E402

GROUP = f"portable C={CAMERAS} B={FRAMES}"
WHEEL = os.environ.get("METAPOSE_WHEEL", "")
IMPLEMENTATIONS = ("native", *loader.LEVELS)
#: relative difference allowed between a build with fused multiply-adds and one without (the
#: baseline level): tests/test_build_info.py's TOLERANCES["refine"]; builds alike agree bit for bit
TOLERANCE = 1e-11


def _fuses(module: ModuleType) -> bool:
    """Whether this module was built with fused multiply-adds (METAPOSE_MADD): its flags, on this CPU."""
    with_fma = ("-march=native", "-march=x86-64-v3", "-march=x86-64-v4")
    flags = module.build_config()["flags"].split()
    return any(flag in flags for flag in with_fma) and bool(mg._core.cpu_features().get("fma"))


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    if not WHEEL:
        pytest.skip("set METAPOSE_WHEEL to a portable wheel (.ci/wheel builds one in dist/ci/wheelhouse)")
    target = tmp_path_factory.mktemp("portable")
    with zipfile.ZipFile(WHEEL) as archive:
        archive.extractall(target)
    return target / "metapose_geom"


@pytest.fixture(scope="module")
def batch():
    return make_batch(CAMERAS)


def _module(wheel_dir: Path, implementation: str) -> ModuleType:
    if implementation == "native":
        if mg.build_info().portable:
            pytest.skip("the installed core is portable: install natively (pip install -e .) to compare")
        return mg._core
    runnable = loader.runnable_levels(dict(mg._core.cpu_features()))
    if implementation not in runnable:
        pytest.skip(f"this CPU cannot run {implementation} (it runs {', '.join(runnable)})")
    return loader.load_level(wheel_dir, implementation)


def _refine(module: ModuleType, batch) -> tuple[np.ndarray, np.ndarray]:
    x, objective, _, _ = module.refine(
        batch.mixtures, batch.x0, batch.bones, batch.bone_reference, 0.0, STEPS, ADAM["learning_rate"],
        ADAM["beta1"], ADAM["beta2"], ADAM["epsilon"], 0,
    )  # fmt: skip
    return x, objective


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_refiner_portable(benchmark, wheel_dir, batch, implementation: str) -> None:
    module = _module(wheel_dir, implementation)
    previous = module.get_num_threads()
    module.set_num_threads(1)  # each module keeps its own count; conftest's fixture sets the installed one's
    try:
        config = module.build_config()
        exact = _fuses(module) == _fuses(mg._core)
        for got, want, what in zip(_refine(module, batch), _refine(mg._core, batch), ("x", "objective")):
            scale = np.abs(want).max() * (0.0 if exact else TOLERANCE)
            np.testing.assert_allclose(got, want, rtol=0, atol=scale, err_msg=f"{implementation} {what} vs the installed core")

        levels = tuple(config["levels"])
        chosen = implementation != "native" and implementation == loader.choose_level(
            levels, dict(module.cpu_features()), None)
        benchmark.group = GROUP
        benchmark.extra_info.update(
            kind="portable", implementation=implementation, chosen=chosen, flags=config["flags"],
            compiler=config["compiler"], module=str(module.__file__), wheel=Path(WHEEL).name, frames=FRAMES,
            cameras=CAMERAS, steps=STEPS, core_threads=module.get_num_threads(),
        )  # fmt: skip
        benchmark(_refine, module, batch)
    finally:
        module.set_num_threads(previous)


def report(path: str) -> str:
    """Markdown table of a saved run: ms per frame (median and best round) and ratio to native."""
    data = json.loads(Path(path).read_text())
    rows = {b["extra_info"]["implementation"]: b for b in data["benchmarks"] if b["group"] == GROUP}
    native = rows["native"]["stats"]
    load = data.get("machine_info", {}).get("load_average", {})
    at_start, at_end = (", ".join(f"{value:.2f}" for value in load.get(key, ())) for key in ("at_start", "at_end"))
    lines = [f"{data.get('datetime', '?')}, {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
             f"load average (1, 5, 15 min) {at_start} at the start, {at_end} at the end", "",
             "| module | ms per frame (median) | ratio to native (median) | ms per frame (best) | "
             "ratio to native (best) | rounds |", "|---|---:|---:|---:|---:|---:|"]
    for name in IMPLEMENTATIONS:
        if name not in rows:
            continue
        stats, info = rows[name]["stats"], rows[name]["extra_info"]
        label = f"{name} (chosen on this CPU)" if info["chosen"] else name
        lines.append(f"| {label} | {stats['median'] / FRAMES * 1e3:.4f} | {stats['median'] / native['median']:.2f}x | "
                     f"{stats['min'] / FRAMES * 1e3:.4f} | {stats['min'] / native['min']:.2f}x | {stats['rounds']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(sys.argv[1]))
