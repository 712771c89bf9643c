"""Dataset files on disk: who holds one, whether it can be written, and setting a damaged one aside.

The promises :class:`~metapose_geom.datasets.DatasetWriter` and the synthetic build keep with them:

* A file held by someone else (another process's HDF5 lock: a reader, a writer, a second build;
  a reader or another :class:`DatasetWriter` in this process) is left untouched, byte for byte,
  and the error is a :class:`DatasetInUseError` that says "in use".
* A file or folder that cannot be written (permissions, a read-only file system) is left
  untouched and the error is a :class:`PermissionError` that says "not writable".
* Only a file whose HDF5 structure cannot be read at all (:class:`DamagedFileError`: HDF5 cannot
  open it even read-only) is moved aside, to ``NAME.corrupt``, or ``NAME.corrupt.1``, ``.2``, ...
  when that is taken: a file set aside earlier is never overwritten.
* A new file is built under ``NAME.creating``, locked while it is built, and renamed into place
  without replacing a file another run put there meanwhile; a build that fails removes it.

Locks are BSD ``flock`` locks, the kind HDF5 takes on Linux (unless ``HDF5_USE_FILE_LOCKING=FALSE``);
without ``fcntl`` (Windows) only HDF5's own locking and this process's registry of writers remain.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "ClaimedWriter",
    "DamagedBlockError",
    "DamagedFileError",
    "DatasetInUseError",
    "check_output_folder",
    "claim_writer",
    "creating",
    "explain_open_failure",
    "lock_held",
    "move_aside",
    "not_writable",
    "publish",
    "release_writer",
]

#: errno values that mean "this cannot be written" rather than "something is wrong with the file"
_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


class DatasetInUseError(BlockingIOError):
    """The file is held by another writer, reader or run; it was left as it is."""


class DamagedFileError(OSError):
    """HDF5 cannot read the file's structure, not even read-only."""


class DamagedBlockError(OSError):
    """A stored block of one field cannot be read (decompressed): frames ``start:stop`` of ``field``."""

    def __init__(self, message: str, field: str, start: int, stop: int) -> None:
        super().__init__(message)
        self.field, self.start, self.stop = field, int(start), int(stop)

    def __reduce__(self):
        return type(self), (str(self), self.field, self.start, self.stop)


# --------------------------------------------------------------------------- locks


def lock_held(path: str | os.PathLike) -> bool:
    """True when another open of ``path`` holds a lock on it (an HDF5 reader or writer in any
    process, a build creating it). Probed with a non-blocking exclusive ``flock``, released at once."""
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # the file system has no locks (ENOLCK, ENOSYS): nobody can hold one
        return False
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def not_writable(path: str | os.PathLike) -> PermissionError | None:
    """The PermissionError ("not writable") when ``path``, an existing file, cannot be opened for
    writing (its permissions, a read-only file system); None when it can."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError as error:
        if error.errno in _NOT_WRITABLE:
            return PermissionError(f"{path}: not writable ({_reason(error)})")
        return None
    os.close(descriptor)
    return None


def explain_open_failure(path: Path, error: OSError, writing: bool, locking: bool = True) -> OSError:
    """The error to raise for an OSError of h5py opening ``path`` (the original is chained by the caller):
    FileNotFoundError, :class:`DatasetInUseError` (a lock, when the open took one: ``locking``),
    PermissionError ("not writable"), :class:`DamagedFileError` when HDF5 cannot open it even
    read-only, else ``error`` with the path."""
    import h5py

    message = str(error)
    if not path.exists():
        return FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        return IsADirectoryError(f"{path}: a folder, not a dataset file")
    if locking and (lock_held(path) or error.errno in (errno.EAGAIN, errno.EWOULDBLOCK)):
        return DatasetInUseError(f"{path}: in use by another process or run (it holds the file's lock); "
                                 "try again once it has closed the file")
    if "unable to lock file" in message:
        return OSError(f"{path}: file locking failed ({message}); on a file system without locks set "
                       "HDF5_USE_FILE_LOCKING=FALSE")
    if writing:
        refused = not_writable(path)
        if refused is not None:
            return refused
    if "already open" in message:
        return DatasetInUseError(f"{path}: in use: already open in this process (close the reader or h5py "
                                 "file that holds it)")
    if isinstance(error, PermissionError) or error.errno in _NOT_WRITABLE:
        return PermissionError(f"{path}: not {'writable' if writing else 'readable'} ({_reason(error)})")
    try:
        h5py.File(path, "r", locking=False).close()
    except OSError as damage:
        return DamagedFileError(f"{path}: not a readable HDF5 file ({damage})")
    return OSError(f"{path}: cannot be opened{' for writing' if writing else ''} ({message})")


# --------------------------------------------------------------------------- writers in this process

_WRITERS: set[str] = set()
_WRITERS_LOCK = threading.Lock()


def claim_writer(path: Path) -> str:
    """Register a writer of ``path`` in this process; :class:`DatasetInUseError` when another has it
    (two writers would each append from their own count and overwrite each other's frames).
    Returns the key for :func:`release_writer`."""
    key = os.path.realpath(path)
    with _WRITERS_LOCK:
        if key in _WRITERS:
            raise DatasetInUseError(f"{path}: in use by another DatasetWriter in this process (close it first; "
                                    "two writers would overwrite each other's frames)")
        _WRITERS.add(key)
    return key


def release_writer(key: str) -> None:
    """Forget the writer registered under ``key``."""
    with _WRITERS_LOCK:
        _WRITERS.discard(key)


class ClaimedWriter:
    """What the file writers (:class:`~metapose_geom.datasets.DatasetWriter`,
    :class:`~metapose_geom.datasets.solutions.SolutionWriter`) share: an open HDF5 file
    (``_file``) and this process's claim on its path (``_claim``, :func:`claim_writer`), both let
    go by :meth:`close`, which a ``with`` block calls."""

    _file: Any = None
    _claim: str | None = None
    _committed: int = 0
    fields: tuple[str, ...] = ()

    @property
    def frames_committed(self) -> int:
        """Frames written and committed so far."""
        return self._committed

    def _drop_uncommitted(self, committed: int) -> int:
        """Cut every field back to the ``committed`` frames (what an interrupted append left beyond
        the commit point) and return ``committed``."""
        for name in self.fields:
            if self._file[name].shape[0] != committed:
                self._file[name].resize(committed, axis=0)
        self._file.flush()
        return committed

    def close(self) -> None:
        """Close the file (uncommitted data stay invisible and are dropped by the next writer) and
        free the path for another writer."""
        try:
            if self._file is not None:
                self._file.close()
                self._file = None
        finally:
            if self._claim is not None:
                release_writer(self._claim)
                self._claim = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- creating, setting aside


@contextmanager
def creating(path: Path) -> Iterator[Path]:
    """``path.creating``, created (or a stale one from a killed build reused) and locked for the
    duration; removed if the body raises. The body builds it and publishes it (:func:`publish`).

    :class:`DatasetInUseError` when another build holds it; PermissionError when the folder is not
    writable."""
    temporary = path.with_name(path.name + ".creating")
    try:
        descriptor = os.open(temporary, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        if error.errno in _NOT_WRITABLE:
            raise PermissionError(f"{path.parent}: not writable ({_reason(error)})") from None
        raise
    try:
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatasetInUseError(f"{path}: in use: another run is creating it ({temporary.name} is "
                                        "locked)") from None
            except OSError:  # no locks on this file system
                pass
        try:
            yield temporary
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    finally:
        os.close(descriptor)


def publish(temporary: Path, path: Path, replace: bool) -> None:
    """Move the built ``temporary`` to ``path``: replacing a file there when ``replace`` (unless
    someone holds it: :class:`DatasetInUseError`), else only when there is none (FileExistsError
    when another run put one there meanwhile)."""
    if replace:
        if lock_held(path):
            raise DatasetInUseError(f"{path}: in use by a reader or writer; not overwritten")
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)  # fails, rather than replaces, when the name is taken
    except FileExistsError:
        raise FileExistsError(f"{path}: created by another run meanwhile; left as it is") from None
    except OSError:  # no hard links here: the check and the rename are not one step
        if os.path.lexists(path):
            raise FileExistsError(f"{path}: created by another run meanwhile; left as it is") from None
        os.rename(temporary, path)
        return
    temporary.unlink()


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``NAME.corrupt``, or the first free of ``NAME.corrupt.1``, ``.2``, ...;
    never over an existing file. Returns the new path."""
    for number in itertools.count():
        aside = path.with_name(f"{path.name}.corrupt" + (f".{number}" if number else ""))
        try:
            os.link(path, aside)
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system
            if os.path.lexists(aside):
                continue
            os.rename(path, aside)
            return aside
        path.unlink()
        return aside
    raise AssertionError("unreachable")  # pragma: no cover


def check_output_folder(folder: str | os.PathLike, name: str = "out") -> Path:
    """``folder`` as a Path if it is, or can be created as, a writable folder; creates nothing.

    NotADirectoryError when it, or the nearest part of it that exists, is not a folder;
    PermissionError ("not writable") when that cannot be written (permissions, a read-only file
    system). Both name ``name`` and the folder."""
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "exists and is not a folder" if existing == folder else f"{existing} is not a folder"
        raise NotADirectoryError(f"{name} {folder}: {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" ({existing} is not writable)"
        reason = " (read-only file system)" if _read_only(existing) else ""
        raise PermissionError(f"{name} {folder}: not writable{where}{reason}")
    return folder


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover - no statvfs
        return False
