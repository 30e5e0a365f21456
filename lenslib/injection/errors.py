"""The injection engine's error classes (a module of their own, so that every injection module can raise them)."""

from lenslib import LenslibError


class InjectionError(LenslibError):
    """Inputs to the injection engine are inconsistent (shapes, PSF, seeds)."""


class InjectionParamsError(InjectionError, ValueError):
    """A physical parameter of an injection is out of range (named, with the injection's index)."""
