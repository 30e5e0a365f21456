"""The reproducibility machinery: how a profile becomes a checked, browsable run.

- ``params``      parameter profiles (``params/*.yaml``), ``--set`` overrides, validation
- ``session``     what a notebook's first cell calls: parameters, artefacts, output folders
- ``runner``      papermill execution of the notebooks and the Jupyter Book build
- ``claims``      the claims registry: the paper's numbers against the recomputed ones
- ``provenance``  what was read (with hashes), by which code, where and when

Modules are imported on demand (``from lenslib.repro import params``).
"""
