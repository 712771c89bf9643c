"""CI must not skip what it installs: pytest hooks that turn such a skip into a failure.

CI (``.ci/run``, which runs with ``CI=true``) installs the ``anipose`` extra, so every test that
``pytest.importorskip("aniposelib")`` guards must run there. With the environment variable CI
set (to anything but "", "0", "false" or "no"), a test, or a whole module at collection, that
skips because a module in :data:`REQUIRED_IN_CI` cannot be imported (or is too old) fails
instead: an ERROR when the skip came from a fixture or at collection, a FAILED from the test's
body. Imported by ``conftest.py``, which is what makes pytest use the hooks.
"""

from __future__ import annotations

import os
import re

import pytest

#: modules CI installs for optional tests; extend when CI installs another extra
REQUIRED_IN_CI = ("aniposelib",)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_reason(report) -> str | None:
    """The reason of a skip that ``pytest.importorskip`` gave for a module of REQUIRED_IN_CI, else None."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    for module in REQUIRED_IN_CI:
        name = re.escape(module)
        if re.search(rf"could not import '{name}(\.[\w.]+)?'|module '{name}' has __version__", reason):
            return reason
    return None


def _fail_if_required(report):
    reason = skip_reason(report) if in_ci() else None
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = (f"CI is set, so this may not skip: {reason}. CI installs the anipose extra "
                           "(.ci/run: pip install \".[dev,anipose]\"); install it here the same way.")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _fail_if_required((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    return _fail_if_required((yield))
