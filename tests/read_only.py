"""Run Python in a subprocess that sees a folder as a read-only file system.

The tests run as root, for whom ``chmod`` does not stop writes; a read-only bind mount does. The
subprocess enters a new user and mount namespace (``unshare --user --map-root-user --mount``),
bind-mounts the folder onto itself and remounts the bind read-only: inside, every write under the
folder fails with EROFS, outside nothing changes. :func:`read_only_available` says whether this
machine allows it (tests skip when it does not).
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _wrap(folder: Path, argv: list[str]) -> list[str]:
    quoted = shlex.quote(str(folder))
    script = (f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted} && "
              f"exec {' '.join(shlex.quote(part) for part in argv)}")
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]


@functools.cache
def read_only_available() -> bool:
    """Whether a read-only bind mount can be made here (unshare present and allowed)."""
    if shutil.which("unshare") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="read-only-probe"))
    code = f"import sys\ntry:\n    open({str(probe / 'file')!r}, 'w')\nexcept OSError:\n    sys.exit(0)\nsys.exit(1)"
    try:
        done = subprocess.run(_wrap(probe, [sys.executable, "-c", code]), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return done.returncode == 0


def run_read_only(folder: Path, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``argv`` run with ``folder`` read-only (see the module docstring); stdout and stderr as text."""
    return subprocess.run(_wrap(Path(folder), argv), capture_output=True, text=True, timeout=timeout)
