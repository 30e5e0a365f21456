"""lenslib's progress bar: ``tqdm.auto`` (a widget in Jupyter, text elsewhere) without its import-time warning.

In a kernel without ipywidgets ``tqdm.auto`` falls back to the text bar and warns "IProgress not found" on stderr,
which an executed page would show; the fallback is what lenslib wants, so the warning is dropped.
"""

import warnings

from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
