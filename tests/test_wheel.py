"""The built wheel, installed into a fresh virtualenv with no compiler reachable, runs.

Given the repaired (manylinux) wheel through the environment variable METAPOSE_WHEEL (``.ci/wheel``
builds it and sets it), this makes a new virtualenv, installs the wheel there with binaries only
(``--only-binary=:all:``) and with PATH holding only the virtualenv's ``bin`` and CC / CXX pointing at
files that do not exist, then, from an empty folder (so the source tree cannot be imported):
``metapose-geom selfcheck``, one ``solve`` of a synthetic frame, the level build_info() chose against
the best level the CPU supports (read from /proc/cpuinfo), and that forcing the baseline level gives
the same solution to rounding. Without METAPOSE_WHEEL (the default test run builds no wheel) it skips, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_build_info import IS_X86_LINUX, TOLERANCES, best_level_from_proc_cpuinfo

WHEEL = os.environ.get("METAPOSE_WHEEL", "")
REPOSITORY = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not WHEEL, reason="no wheel to test: set METAPOSE_WHEEL to a built wheel (.ci/wheel builds one and sets it)"
)

SOLVE = """
import json, sys
import numpy as np
import metapose_geom as mg

scene = mg.synth.make_scene(3)
solution = mg.solve(scene.views(), method="ir")
print(json.dumps({"build": mg.build_info().as_dict(), "pose3d": solution.pose3d.tolist(),
                  "objective": float(solution.objective),
                  "pmpjpe_mm": float(mg.metrics.pmpjpe(solution.pose3d, scene.pose3d))}))
"""


def _environment(venv: Path, **more: str) -> dict[str, str]:
    """The environment of every command in the virtualenv: no compiler, no source tree, no forced level."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PATH", "CC", "CXX", "PYTHONPATH", "VIRTUAL_ENV", "METAPOSE_ISA", "PYTHONHOME")}
    env.update(PATH=str(venv / "bin"), CC=str(venv / "no-compiler" / "cc"), CXX=str(venv / "no-compiler" / "c++"),
               VIRTUAL_ENV=str(venv), **more)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    wheel = Path(WHEEL).resolve()
    assert wheel.is_file(), f"METAPOSE_WHEEL={WHEEL}: no such file"
    root = tmp_path_factory.mktemp("wheel-test") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    env = _environment(root)
    for compiler in ("cc", "c++", "gcc", "g++", "clang", "clang++", "cmake", "ninja"):
        assert shutil.which(compiler, path=env["PATH"]) is None, f"{compiler} is reachable in the test's PATH"
    subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--only-binary=:all:",
                    "-c", str(REPOSITORY / "constraints.txt"), str(wheel)],
                   check=True, env=env, cwd=tmp_path_factory.mktemp("install"), timeout=1200)  # fmt: skip
    return root


def _run(venv: Path, cwd: Path, *command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=_environment(venv, **env), cwd=cwd, timeout=600)


def _solve(venv: Path, cwd: Path, **env: str) -> dict:
    result = _run(venv, cwd, str(venv / "bin" / "python"), "-c", SOLVE, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_wheel_is_manylinux():
    name = Path(WHEEL).name
    assert "manylinux" in name, f"{name}: not repaired by auditwheel to a manylinux tag"


def test_selfcheck(venv, tmp_path):
    result = _run(venv, tmp_path, str(venv / "bin" / "metapose-geom"), "selfcheck")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("metapose-geom build:\n")
    assert "self-check passed" in result.stdout


def test_solve_imports_the_best_level_this_cpu_runs(venv, tmp_path):
    solved = _solve(venv, tmp_path)
    build = solved["build"]
    assert build["portable"] is True and build["forced"] is None
    assert Path(build["module"]).is_relative_to(venv), build["module"]  # the wheel's module, not the source tree's
    assert build["version"] == Path(WHEEL).name.split("-")[1]  # metapose_geom-<version>-<tags>.whl
    expected = best_level_from_proc_cpuinfo() if IS_X86_LINUX else "baseline"
    assert build["level"] == expected
    assert build["cpu_levels"][-1] == expected
    if IS_X86_LINUX:
        assert build["levels_built"] == ["baseline", "x86-64-v3", "x86-64-v4"]
    assert solved["pmpjpe_mm"] < 60.0, solved["pmpjpe_mm"]  # a sensible pose (S1+IR on a synthetic frame)


def test_baseline_level_gives_the_same_solution(venv, tmp_path):
    """To rounding: the baseline has no fused multiply-add (tests/test_build_info.py)."""
    chosen = _solve(venv, tmp_path)
    baseline = _solve(venv, tmp_path, METAPOSE_ISA="baseline")
    assert baseline["build"]["level"] == "baseline" and baseline["build"]["forced"] == "baseline"
    scale = np.abs(np.array(chosen["pose3d"])).max()
    np.testing.assert_allclose(baseline["pose3d"], chosen["pose3d"], rtol=0, atol=TOLERANCES["refine"] * scale)
    assert baseline["objective"] == pytest.approx(chosen["objective"], rel=TOLERANCES["refine"])


def test_levels_beyond_the_cpu_are_refused(venv, tmp_path):
    build = _solve(venv, tmp_path)["build"]
    for level in build["levels_built"]:
        if level in build["cpu_levels"]:
            continue
        result = _run(venv, tmp_path, str(venv / "bin" / "python"), "-c", "import metapose_geom", METAPOSE_ISA=level)
        assert result.returncode != 0
        assert f"LevelError: METAPOSE_ISA={level}: this CPU cannot run it" in result.stderr
