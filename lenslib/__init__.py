"""lenslib: the executable edition of *The morphological barrier* (DESI Legacy Survey DR10).

Subpackages by job, bottom to top (a layer imports only from layers below it; ``tests/test_layering.py``
keeps it so). Nothing is imported until asked for, so ``import lenslib`` stays cheap.

- ``lenslib.survey``       DR10 conventions: bands, stamp size, pixel scale, zero point, depths, CHW/HWC
- ``lenslib.stats``        binomial intervals and paired tests
- ``lenslib.data``         storage (S3 / local), cutouts, manifests, catalogues, HEALPix split, coadd tiles
- ``lenslib.injection``    the batched PyTorch injection engine (SIE + shear; Sérsic, pixelated and realistic
                           sources; PSF, noise)
- ``lenslib.finder``       CNN lens finders: models, preprocessing, configs, training, checkpoints, scoring
- ``lenslib.experiments``  the paper's experiments, the D06 artefact readers and the paper's figures
- ``lenslib.repro``        parameter profiles, notebook sessions, the book runner, claims, provenance
- ``lenslib.synthetic``    a synthetic DR10-like survey with known truth (the demo world), in the real formats
- ``lenslib.cli``          ``python -m lenslib run | claims | params | synth | train | score``
"""

__version__ = "0.1.0"


class LenslibError(Exception):
    """Base class of every error lenslib raises on purpose (bad input, missing data)."""


class ParamError(LenslibError):
    """A parameter, a config key or a YAML file is unknown, missing, malformed or of the wrong type."""
