"""lenslib's progress bar: ``tqdm.auto`` (a widget in Jupyter, text elsewhere) without its import-time warning,
and with a thread lock instead of tqdm's default multiprocessing one.

In a kernel without ipywidgets ``tqdm.auto`` falls back to the text bar and warns "IProgress not found" on stderr,
which an executed page would show; the fallback is what lenslib wants, so the warning is dropped.

tqdm's default write lock pairs a thread lock with a ``multiprocessing.RLock`` shared by every bar of the process;
a child forked while that lock is held (mutmut's test runners, a forked worker pool) waits on it forever. lenslib
draws bars from threads, never from other processes, so a re-entrant thread lock is all it needs: it is set once
here, for every tqdm class (the text, notebook and asyncio bars share the lock of :class:`tqdm.std.tqdm`).
"""

import threading
import warnings

from tqdm import TqdmWarning
from tqdm.std import tqdm as _std_tqdm

_std_tqdm.set_lock(threading.RLock())

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
