"""build_info() and the choice of instruction-set level (metapose_geom._core_loader).

* build_info() describes the module actually imported, and its CPU features agree with the
  kernel's /proc/cpuinfo (an independent reading of cpuid);
* the choice of level (pure function) and METAPOSE_ISA, in a fresh interpreter: unknown, unbuilt and
  beyond-the-CPU levels are refused with the reason;
* every level of a portable build that this CPU runs (and the native build, when there is one) gives
  the baseline level's results to rounding: the refiner, stage 1, every raw geometry kernel and the
  dense layers, on the same inputs, modules loaded side by side. The build keeps -ffp-contract=off,
  so the vector width changes nothing; what differs is METAPOSE_MADD (fastmath.hpp) and the dense
  tiles (dense.hpp), a fused multiply-add where the level has FMA (x86-64-v3 and up, native here)
  and a multiply then an add at the baseline. Levels that all have FMA are bit-identical; against
  the baseline the differences measured (x86-64-v3 and native on an AMD EPYC, GCC 12, relative to
  the largest value of each output) are: stage 1 and every geometry kernel but the mixture ones,
  none; the mixture log-likelihood and its gradient 1.2e-16; the refiner after 100 steps 1.4e-13
  in x, 1.5e-15 in the objective; the dense layers 2.7e-16 (float64), 1.8e-7 (float32). The
  tolerances, :data:`TOLERANCES`, leave a margin of 50 to 100.

The level comparisons need a portable build: the installed package when it is one, or the wheel named
by the environment variable METAPOSE_WHEEL (``.ci/wheel`` sets it). A default development install is
native only, and they skip, saying so.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import _core_loader as loader
from metapose_geom import synth
from metapose_geom.skeletons import H36M_17
from signatures import CORE, DIMS, as_outputs

#: largest difference allowed between a level with FMA and the baseline, relative to the largest
#: |value| of each output (measured: see the module's docstring; x86-64-v4 not measured, no AVX-512 here)
TOLERANCES = {"kernels": 1e-14, "refine": 1e-11, "float64": 1e-14, "float32": 1e-5}

#: /proc/cpuinfo's name of each feature the modules report
PROC_CPUINFO_NAMES = {"sse3": "pni", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "lzcnt": "abm"}

IS_X86_LINUX = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


def proc_cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    raise AssertionError("no flags line in /proc/cpuinfo")


def best_level_from_proc_cpuinfo() -> str:
    """The best portable level this CPU runs, from /proc/cpuinfo alone (not from the modules)."""
    flags = proc_cpuinfo_flags()
    best = "baseline"
    for level in ("x86-64-v3", "x86-64-v4"):
        if all(PROC_CPUINFO_NAMES.get(name, name) in flags for name in loader.REQUIRED_FEATURES[level]):
            best = level
    return best


# --------------------------------------------------------------------------- build_info


def test_build_info_describes_the_loaded_module():
    info = mg.build_info()
    assert isinstance(info, mg.BuildInfo)
    assert info is not mg.build_info() and info == mg.build_info()  # a fresh, equal record each call
    config = mg._core.build_config()
    assert info.level == config["level"] and info.levels_built == tuple(config["levels"])
    assert info.module == mg._core.__file__
    assert Path(info.module).name.startswith(loader.MODULES[info.level] + ".")
    assert info.level in info.levels_built
    assert info.version == mg.__version__
    assert "-ffp-contract=off" in info.flags.split()
    assert info.compiler.split()[0] in ("GNU", "Clang", "AppleClang", "MSVC", "IntelLLVM")
    assert info.cuda_found <= info.cuda_requested
    assert info.portable == (info.levels_built != ("native",))
    if info.portable:
        assert info.level == info.cpu_levels[-1] or info.forced is not None
        assert f"-march={'x86-64' if info.level == 'baseline' else info.level}" in info.flags.split()
    else:
        assert info.level == "native" and "-march=native" in info.flags.split()
    assert info.as_dict()["level"] == info.level
    text = str(info)
    assert len(text.splitlines()) == len(info.as_dict())
    assert f"level           {info.level}" in text


@pytest.mark.skipif(not IS_X86_LINUX, reason="/proc/cpuinfo's x86 flags: Linux on x86-64 only")
def test_cpu_features_agree_with_proc_cpuinfo():
    features = mg._core.cpu_features()
    names = {name for levels in loader.REQUIRED_FEATURES.values() for name in levels}
    assert set(features) == names
    flags = proc_cpuinfo_flags()
    for name, present in features.items():
        assert present == (PROC_CPUINFO_NAMES.get(name, name) in flags), name
    info = mg.build_info()
    assert info.cpu_features == tuple(name for name in features if features[name])
    assert info.cpu_levels[-1] == best_level_from_proc_cpuinfo()
    assert info.cpu_levels[0] == "baseline"


def test_selfcheck_prints_build_info_first(capsys):
    from metapose_geom import cli

    assert cli.main(["selfcheck"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "metapose-geom build:"
    assert f"  level           {mg.build_info().level}" in lines[1:14]


# --------------------------------------------------------------------------- choosing a level

ALL_V4 = dict.fromkeys(loader.REQUIRED_FEATURES["x86-64-v4"], True)
ONLY_V3 = {**ALL_V4, "avx512bw": False}
OLD_CPU = {**ONLY_V3, "avx2": False}
PORTABLE = ("baseline", "x86-64-v3", "x86-64-v4")


@pytest.mark.parametrize("built, features, forced, expected", [
    (PORTABLE, ALL_V4, None, "x86-64-v4"),
    (PORTABLE, ONLY_V3, None, "x86-64-v3"),
    (PORTABLE, OLD_CPU, None, "baseline"),
    (PORTABLE, {}, None, "baseline"),  # not x86: no features reported
    (("baseline", "x86-64-v3"), ALL_V4, None, "x86-64-v3"),  # a compiler without v4
    (PORTABLE, ALL_V4, "baseline", "baseline"),
    (PORTABLE, ONLY_V3, "x86-64-v3", "x86-64-v3"),
    (("native",), OLD_CPU, None, "native"),
    (("native",), OLD_CPU, "native", "native"),
])  # fmt: skip
def test_choose_level(built, features, forced, expected):
    assert loader.choose_level(built, features, forced) == expected


@pytest.mark.parametrize("built, features, forced, message", [
    (PORTABLE, ALL_V4, "avx2", "METAPOSE_ISA='avx2' is not a level: expected one of baseline, x86-64-v3, x86-64-v4, native"),
    (("baseline", "x86-64-v3"), ALL_V4, "x86-64-v4", "METAPOSE_ISA=x86-64-v4: that level was not built; this build has baseline, x86-64-v3"),
    (PORTABLE, ONLY_V3, "x86-64-v4", "METAPOSE_ISA=x86-64-v4: this CPU cannot run it (it lacks avx512bw); it runs baseline, x86-64-v3"),
    (PORTABLE, OLD_CPU, "x86-64-v3", "METAPOSE_ISA=x86-64-v3: this CPU cannot run it (it lacks avx2); it runs baseline"),
    (("native",), ALL_V4, "baseline", "METAPOSE_ISA=baseline: this is a native build"),
    (PORTABLE, ALL_V4, "native", "METAPOSE_ISA=native: that level was not built"),
])  # fmt: skip
def test_choose_level_refuses(built, features, forced, message):
    with pytest.raises(ImportError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        loader.choose_level(built, features, forced)


def _import_with(level: str) -> subprocess.CompletedProcess:
    code = "import metapose_geom as mg; info = mg.build_info(); print(info.level, info.forced)"
    env = {**os.environ, loader.ENVIRONMENT: level}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_metapose_isa_unknown_is_refused_at_import():
    result = _import_with("avx9000")
    assert result.returncode != 0
    assert "LevelError: METAPOSE_ISA='avx9000' is not a level" in result.stderr


def test_metapose_isa_forces_or_refuses_each_level():
    info = mg.build_info()
    for level in (*loader.LEVELS, "native"):
        result = _import_with(level)
        if level in info.levels_built and (level == "native" or level in info.cpu_levels):
            assert result.returncode == 0, result.stderr
            assert result.stdout.split() == [level, level]
        else:
            assert result.returncode != 0, f"{level} was imported: {result.stdout}"
            assert f"LevelError: METAPOSE_ISA={level}: " in result.stderr
            reason = "cannot run it" if level in info.levels_built else ("native build" if not info.portable
                                                                          else "was not built")
            assert reason in result.stderr


# --------------------------------------------------------------------------- the levels agree


@pytest.fixture(scope="module")
def portable_dir(tmp_path_factory) -> Path:
    """A folder holding a portable build's modules: the wheel METAPOSE_WHEEL unpacked, else the
    installed package when it is portable; skips otherwise."""
    wheel = os.environ.get("METAPOSE_WHEEL")
    if wheel:
        target = tmp_path_factory.mktemp("wheel")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        return target / "metapose_geom"
    info = mg.build_info()
    if info.portable:
        return Path(info.module).parent
    pytest.skip("no portable build to compare: the installed core is the native one (-march=native) and "
                "METAPOSE_WHEEL is not set; .ci/wheel sets it to the built wheel")


@pytest.fixture(scope="module")
def baseline(portable_dir) -> ModuleType:
    return loader.load_level(portable_dir, "baseline")


def test_portable_build_has_every_level(portable_dir, baseline):
    config = baseline.build_config()
    expected = loader.LEVELS if IS_X86_LINUX else ("baseline",)
    assert tuple(config["levels"]) == expected  # GCC 12 and Clang 12 on accept -march=x86-64-v4
    assert config["level"] == "baseline" and "-march=x86-64" in config["flags"].split()
    suffixes = (".so", ".pyd")
    files = sorted(path.name.partition(".")[0] for path in portable_dir.iterdir() if path.suffix in suffixes)
    assert files == sorted(loader.MODULES[level] for level in expected)


@pytest.mark.skipif(not IS_X86_LINUX, reason="x86-64 levels")
def test_levels_beyond_this_cpu_are_refused(portable_dir, baseline):
    runnable = loader.runnable_levels(dict(baseline.cpu_features()))
    beyond = [level for level in loader.LEVELS if level not in runnable]
    if not beyond:
        pytest.skip("this CPU runs every level")
    for level in beyond:
        with pytest.raises(ImportError, match=f"this CPU cannot run the {level} module"):
            loader.load_level(portable_dir, level)


def _level_module(portable_dir: Path, level: str) -> ModuleType:
    if level == "native":
        if mg.build_info().portable:
            pytest.skip("the installed core is portable: no native module to compare")
        return mg._core
    runnable = loader.runnable_levels(dict(mg._core.cpu_features()))
    if level not in runnable:
        pytest.skip(f"this CPU cannot run {level} (it runs {', '.join(runnable)})")
    return loader.load_level(portable_dir, level)


def assert_close(name: str, actual, expected, tolerance: float) -> None:
    """actual equals expected to ``tolerance`` times expected's largest |value| (0: bit for bit)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
    if tolerance == 0:
        np.testing.assert_array_equal(actual, expected, err_msg=name)
    else:
        scale = float(np.max(np.abs(expected), initial=0.0))
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * scale, err_msg=name)


LEVELS_COMPARED = ("native", "x86-64-v3", "x86-64-v4")


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    scenes = synth.make_scenes(24, num_cameras=4, seed=15)
    views = [scene.views() for scene in scenes]
    bones = np.array(H36M_17.bones, dtype=np.int64)
    return {"mixtures": np.stack([v.mixtures for v in views]), "mono3d": np.stack([v.mono3d for v in views]),
            "bones": bones, "reference": np.ones((len(views), len(bones)))}


def stage1_and_refine(module: ModuleType, frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stage 1, then 100 refiner steps without and with the bone term (history every 10 steps), and the
    same through ``solve_weak`` (the solver's call: the result in camera 0's frame, reprojection, pixels)."""
    x0 = module.stage1(frames["mono3d"])
    results = {"stage1": x0}
    for bone_weight in (0.0, 0.1):
        refined = module.refine(frames["mixtures"], x0, frames["bones"], frames["reference"], bone_weight, 100,
                                1e-2, 0.9, 0.999, 1e-7, 10)
        for what, value in zip(("x", "objective", "history x", "history objective"), refined):
            results[f"refine {what}, bone weight {bone_weight}"] = value
    # what solve calls: the refiner, then camera 0's frame, the reprojection and the pixels
    boxes = np.tile([10.0, 20.0, 200.0, 180.0], (*frames["mixtures"].shape[:2], 1))
    solved = module.solve_weak(frames["mixtures"], x0, frames["bones"], frames["reference"], 0.1, 100, 1e-2, 0.9,
                               0.999, 1e-7, 10, True, boxes)
    assert solved[-1] is None, solved[-1]
    names = ("x", "objective", "start objective", "history x", "history objective", "pose", "rotation", "scale",
             "shift", "reprojection", "pixels")
    for what, value in zip(names, solved[:-1]):
        results[f"solve_weak {what}"] = value
    return results


def kernel_outputs(module: ModuleType) -> dict[str, np.ndarray]:
    """Every raw geometry kernel (tests/signatures.py's CORE) on seeded inputs: one item, and 37 (enough
    for vector bodies and scalar tails)."""
    rng = np.random.default_rng(7)
    results = {}
    for signature in CORE:
        for batch in ((), (37,)):
            arrays = signature.make(rng, batch, DIMS)
            outputs = as_outputs(signature, getattr(module, signature.name)(*arrays, *signature.extra))
            for index, value in enumerate(outputs):
                results[f"{signature.id} output {index}, batch {batch}"] = value
    return results


def dense_outputs(module: ModuleType) -> dict[str, np.ndarray]:
    results = {}
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(3)
        rows, weight, bias = (rng.normal(size=shape).astype(dtype) for shape in ((53, 29), (29, 67), (67,)))
        for activation in ("none", "selu"):
            results[f"dense {np.dtype(dtype).name} {activation}"] = module.dense(rows, weight, bias, activation, 1)
    return results


@pytest.mark.parametrize("level", LEVELS_COMPARED)
def test_level_results_equal_baseline_to_rounding(portable_dir, baseline, frames, level):
    """Stage 1 and the kernels without multiply-adds bit for bit, the rest within TOLERANCES."""
    module = _level_module(portable_dir, level)
    expected = stage1_and_refine(baseline, frames)
    for name, value in stage1_and_refine(module, frames).items():
        assert_close(name, value, expected[name], 0.0 if name == "stage1" else TOLERANCES["refine"])
    expected = kernel_outputs(baseline)
    for name, value in kernel_outputs(module).items():
        assert_close(name, value, expected[name], TOLERANCES["kernels"] if "mixture" in name else 0.0)
    expected = dense_outputs(baseline)
    for name, value in dense_outputs(module).items():
        assert_close(name, value, expected[name], TOLERANCES[name.split()[1]])


def test_levels_with_fma_are_bit_identical(portable_dir, frames):
    """x86-64-v3, x86-64-v4 and a native build on an FMA machine run the same arithmetic."""
    modules = {}
    for level in LEVELS_COMPARED:
        try:
            modules[level] = _level_module(portable_dir, level)
        except pytest.skip.Exception:
            continue
    if mg._core.cpu_features().get("fma") is not True or len(modules) < 2:
        pytest.skip(f"fewer than two levels with FMA to compare here ({', '.join(modules) or 'none'})")
    (first, reference), *others = modules.items()
    expected = {**stage1_and_refine(reference, frames), **kernel_outputs(reference), **dense_outputs(reference)}
    for level, module in others:
        actual = {**stage1_and_refine(module, frames), **kernel_outputs(module), **dense_outputs(module)}
        for name, value in actual.items():
            assert_close(f"{level} vs {first}: {name}", value, expected[name], 0.0)
