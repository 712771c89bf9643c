"""A Dask worker plugin for the tests of metapose_geom.distributed: it kills its own worker process
once, when a solve task starts executing, so a run loses a worker mid-way."""

from __future__ import annotations

import os
import signal

from distributed.diagnostics.plugin import WorkerPlugin


class KillOnce(WorkerPlugin):
    """SIGKILL this worker's process when a ``metapose-solve-*`` task of a chunk starting at or after
    frame ``after`` begins to execute, once over the whole cluster (``marker`` is created
    atomically by the worker that dies)."""

    name = "metapose-kill-once"

    def __init__(self, marker: str, after: int) -> None:
        self.marker = marker
        self.after = after

    def transition(self, key, start, finish, **kwargs) -> None:
        name = str(key)
        if finish != "executing" or not name.startswith("metapose-solve-"):
            return
        if int(name.rsplit("-", 1)[1]) < self.after:
            return
        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        os.kill(os.getpid(), signal.SIGKILL)
