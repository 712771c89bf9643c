"""ci_skips: with CI set, a skip because a module CI installs is missing fails the run."""

from __future__ import annotations

import pytest

import ci_skips

pytest_plugins = ["pytester"]

MISSING = "metapose_geom_no_such_module"
#: the inner runs need none of the suite's plugins
QUIET = ("-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:hypothesispytest")

TESTS = f"""
import pytest

@pytest.fixture
def needs_it():
    pytest.importorskip("{MISSING}")

def test_in_a_fixture(needs_it):
    pass

def test_in_the_body():
    pytest.importorskip("{MISSING}")

def test_another_module_may_skip():
    pytest.importorskip("metapose_geom_another_missing_module")

def test_a_plain_skip():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known", strict=True)
def test_an_xfail():
    assert False
"""


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.setattr(ci_skips, "REQUIRED_IN_CI", (MISSING,))
    pytester.makeconftest("from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa")
    pytester.makepyfile(test_optional=TESTS)
    pytester.makepyfile(test_module_level=f'import pytest\npytest.importorskip("{MISSING}")\n\ndef test_x():\n    pass\n')
    return pytester


@pytest.mark.parametrize("value", ["true", "1"])
def test_with_ci_a_required_module_may_not_skip(project, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = project.runpytest(*QUIET, "-ra", "--continue-on-collection-errors")
    result.assert_outcomes(errors=2, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines([
        "ERROR test_module_level.py - CI is set, so this may not skip: *could not import*",
        "ERROR test_optional.py::test_in_a_fixture - CI is set*",
        "FAILED test_optional.py::test_in_the_body - CI is set*",
    ])
    assert result.ret != 0


@pytest.mark.parametrize("value", [None, "false"])
def test_without_ci_it_skips(project, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    result = project.runpytest(*QUIET)
    result.assert_outcomes(skipped=5, xfailed=1)
    assert result.ret == 0


def test_aniposelib_is_required_in_ci():
    assert "aniposelib" in ci_skips.REQUIRED_IN_CI


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("yes", True), (" TRUE ", True),
                                             ("", False), ("0", False), ("false", False), ("No", False)])
def test_in_ci(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert ci_skips.in_ci() is expected
