"""lenslib: the executable edition of *The morphological barrier* (DESI Legacy Survey DR10).

Submodules are imported on demand, so ``import lenslib`` stays cheap:

- ``lenslib.params``   parameter profiles (``params/*.yaml``) and their validation
- ``lenslib.storage``  one way to read ``s3://`` URIs and local paths
- ``lenslib.artefacts`` readers for the paper's published D06 result artefacts
- ``lenslib.stats``    binomial intervals and paired tests
- ``lenslib.tier_a``, ``lenslib.grid``, ``lenslib.bright_arc``, ``lenslib.poisson``,
  ``lenslib.probe``, ``lenslib.gallery``  one module per result of the paper
- ``lenslib.figures``  the paper's figures
- ``lenslib.claims``   the claims registry: published numbers against recomputed ones
- ``lenslib.session``  what a notebook cell calls to get parameters, data and outputs
- ``lenslib.runner``   papermill execution of the notebooks and the Jupyter Book build
"""

__version__ = "0.1.0"


class LenslibError(Exception):
    """Base class of every error lenslib raises on purpose (bad input, missing data)."""
