"""Where lenslib's heavy steps run: in this process (``local``) or as tasks on a Dask cluster (``dask``).

A heavy step (the grid's shards, the bright-arc bins, the chunks of a manifest being scored) is written as a
function ``fn(context, item)`` that computes one item and writes its own shard atomically, plus a context
that every task needs (host images, the plan, the model). :meth:`Executor.map` runs it: the local executor
item after item; the Dask executor sends the context once to each worker and one task per item, so a worker
that dies costs only its task, which Dask reruns elsewhere, and a rerun of the whole step skips the items whose
shards exist. Both executors call the same function on the same items, so the artefacts are the same.

- ``executor``    the local and Dask executors, ``make_executor`` (the ``executor`` parameter),
                  ``worker_device`` and ``on_worker_device`` (where a task's model runs)
- ``plugins``     the Dask worker plugin that sets torch's threads (imported only with Dask)
"""

from lenslib.parallel.executor import (
    DaskExecutor,
    Executor,
    ExecutorError,
    LocalExecutor,
    make_executor,
    on_worker_device,
    worker_device,
)

__all__ = ["DaskExecutor", "Executor", "ExecutorError", "LocalExecutor", "make_executor", "on_worker_device",
           "worker_device"]
