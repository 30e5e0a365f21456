"""The two executors of lenslib's heavy steps (see :mod:`lenslib.parallel`) and the choice between them."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lenslib import LenslibError
from lenslib._tqdm import tqdm

KINDS = ("local", "dask")
#: variables that distributed's nannies set in this process's environment before they start a worker (so that the
#: worker inherits them) and never reset; left set, every later subprocess (a notebook, a test) would run torch and
#: BLAS on one thread. The executor puts them back as they were.
NANNY_ENVIRON = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def _environ(keys: tuple[str, ...] = NANNY_ENVIRON) -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in keys}


def _restore_environ(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class ExecutorError(LenslibError, ValueError):
    """The executor cannot be set up (unknown kind, Dask missing, scheduler unreachable) or a task failed."""


class Executor(Protocol):
    """Runs ``fn(context, item)`` for every item; returns the results in the order of ``items``."""

    kind: str

    def map(self, fn: Callable[[Any, Any], Any], context: Any, items: Sequence[Any], *, desc: str = "tasks",
            progress: bool = True) -> list[Any]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Every item in this process, one after the other."""

    kind = "local"

    def map(self, fn: Callable[[Any, Any], Any], context: Any, items: Sequence[Any], *, desc: str = "tasks",
            progress: bool = True) -> list[Any]:
        return [fn(context, item) for item in tqdm(items, desc=desc, unit="task", disable=not progress)]

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Box:
    """One object to scatter (Dask would split a list or a dict into one piece per element)."""

    def __init__(self, value: Any):
        self.value = value


def _call(fn: Callable[[Any, Any], Any], box: _Box, item: Any) -> Any:
    return fn(box.value, item)


class DaskExecutor:
    """Tasks on a Dask cluster: the one at ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``), or
    a ``LocalCluster`` on 127.0.0.1 sized to this machine (``n_workers`` processes of ``threads_per_worker``
    threads; one worker per GPU with ``LocalCUDACluster`` where dask-cuda is installed and GPUs are seen).

    The context of a step is scattered once to every worker (not sent with each task); every worker runs
    torch with ``threads_per_worker`` threads so that workers do not oversubscribe the cores. The cluster
    is started, or the scheduler reached, when the first step runs.
    """

    kind = "dask"

    def __init__(self, scheduler: str | None = None, *, n_workers: int | None = None, threads_per_worker: int = 1,
                 timeout_s: float = 10.0, retries: int = 2, log: Callable[[str], Any] = print):
        if n_workers is not None and n_workers < 1:
            raise ExecutorError(f"parameter 'dask_workers' must be ≥ 1, got {n_workers}")
        if threads_per_worker < 1:
            raise ExecutorError(f"threads_per_worker must be ≥ 1, got {threads_per_worker}")
        self.scheduler, self.n_workers, self.threads = scheduler, n_workers, threads_per_worker
        self.timeout_s, self.retries, self.log = timeout_s, retries, log
        self._client = None
        self._cluster = None
        self._environ = _environ()

    @property
    def client(self):
        """The ``distributed.Client`` (connecting, or starting the local cluster, on first use)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self):
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorError("parameter 'executor' is 'dask' but Dask's distributed scheduler is not installed: "
                                "pip install 'lenslib[dask]'") from None
        from lenslib.parallel.plugins import TorchThreads

        if self.scheduler is None:
            self._environ = _environ()
            try:
                self._cluster = self._local_cluster()
            finally:
                _restore_environ(self._environ)
            client = Client(self._cluster)
        else:
            try:
                client = Client(self.scheduler, timeout=f"{self.timeout_s}s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ExecutorError(f"parameter 'dask_scheduler': no Dask scheduler answers at {self.scheduler!r} "
                                    f"within {self.timeout_s:g} s ({type(exc).__name__}: {exc}); start one "
                                    f"(`dask scheduler`, dask-jobqueue, dask-kubernetes) or set dask_scheduler: "
                                    f"null for a local cluster") from None
        client.register_plugin(TorchThreads(self.threads), name="lenslib-torch-threads")
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        board = client.dashboard_link if importlib.util.find_spec("bokeh") else "off (pip install bokeh)"
        self.log(f"dask: {n} workers at {client.scheduler.address}; dashboard {board}")
        return client

    def _local_cluster(self):
        from distributed import LocalCluster

        if self.n_workers is None and _cuda_devices() > 0:
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                pass
            else:
                return LocalCUDACluster(ip="127.0.0.1", dashboard_address=":0", threads_per_worker=self.threads)
        n = self.n_workers or max(1, (os.cpu_count() or 1) // self.threads)
        return LocalCluster(n_workers=n, threads_per_worker=self.threads, processes=True, host="127.0.0.1",
                            dashboard_address=":0")

    def map(self, fn: Callable[[Any, Any], Any], context: Any, items: Sequence[Any], *, desc: str = "tasks",
            progress: bool = True) -> list[Any]:
        from distributed import as_completed

        items = list(items)
        if not items:
            return []
        client = self.client
        box = client.scatter(_Box(context), broadcast=True, hash=False)
        tag = f"{desc.replace(' ', '_')}-{uuid.uuid4().hex[:8]}"
        futures = [client.submit(_call, fn, box, item, key=f"{tag}-{k}", retries=self.retries, pure=False)
                   for k, item in enumerate(items)]
        try:
            with tqdm(total=len(futures), desc=f"{desc} (dask)", unit="task", disable=not progress) as bar:
                for future in as_completed(futures):
                    if future.status == "error":
                        raise ExecutorError(f"{desc}: a task failed on the cluster: {future.exception()!r}") \
                            from future.exception()
                    bar.update()
            return client.gather(futures)
        finally:
            client.cancel([*futures, box])
            if self._cluster is not None:  # a nanny that restarted a worker set them again
                _restore_environ(self._environ)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
            _restore_environ(self._environ)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cuda_devices() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def make_executor(kind: str = "local", scheduler: str | None = None, *, n_workers: int | None = None,
                  log: Callable[[str], Any] = print) -> LocalExecutor | DaskExecutor:
    """The executor named by the ``executor`` parameter (``local`` or ``dask``; ``dask_scheduler`` and
    ``dask_workers`` configure the Dask one)."""
    if kind not in KINDS:
        raise ExecutorError(f"parameter 'executor' must be one of {list(KINDS)}, got {kind!r}")
    if kind == "local":
        return LocalExecutor()
    return DaskExecutor(scheduler, n_workers=n_workers, log=log)


def worker_device() -> str:
    """The torch device of a task: the worker's GPU (dask-cuda gives each worker one) or the CPU."""
    return "cuda" if _cuda_devices() > 0 else "cpu"


def on_worker_device(model: Any, device: Any = None) -> Any:
    """Move ``model`` (a torch module) to ``device``, or to the worker's own (:func:`worker_device`) when it is
    None, and return that ``torch.device``: what a task does once per process before it injects or scores."""
    import torch

    dev = torch.device(device if device is not None else worker_device())
    model.to(dev)
    return dev

