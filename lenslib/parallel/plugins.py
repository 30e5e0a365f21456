"""Dask worker plugins (imported only when the Dask executor is used: it needs ``distributed``)."""

from __future__ import annotations

from distributed import WorkerPlugin


class TorchThreads(WorkerPlugin):
    """Run torch on ``n`` threads in every worker (one per worker thread), so that the workers of one machine
    share its cores instead of each taking them all."""

    def __init__(self, n: int):
        self.n = int(n)

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(self.n)
