"""Readers for the paper's published D06 result artefacts (layout ``results/D06_corrected_priors/``).

Each method reads one artefact through a :class:`~lenslib.data.storage.Store` and returns plain
Python / pandas / numpy objects; the schemas are those of ``shared/spec/PAPER_SPEC.md`` §F.
A missing file raises :class:`~lenslib.data.storage.ArtefactMissing` naming the file and what needs it.
"""

from __future__ import annotations

import io
import json
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from lenslib import LenslibError
from lenslib.data.storage import ArtefactMissing, Store
from lenslib.experiments import checks
from lenslib.experiments.checks import ArtefactFormatError

GRID_CONDITIONS = ("no_poisson", "poisson")
# the realism gate's grid with realistic sources (lenslib.experiments.compute.gate; not in the published D06)
GRID_EXTRA = ("realistic_no_poisson",)
BRIGHT_ARC_VARIANTS = ("baseline", "poisson", "clip20", "poisson_clip20", "unrestricted", "gain_1e12")

# Relative paths of every artefact this package reads.
PATHS = {
    "tier_a_scoring": "tier_a_scoring/real_lens_scoring_results.json",
    "grid_csv": "grid_{condition}/selection_function.csv",
    "gate_results": "realism_gate/gate_results.json",
    "grid_meta": "grid_{condition}/selection_function_meta.json",
    "bright_arc": "ba_{variant}/bright_arc_results.json",
    "probe_results": "linear_probe/feature_space_results.json",
    "probe_permutation": "linear_probe/permutation_bootstrap_results.json",
    "probe_checkpoint": "linear_probe/checkpoint.npz",
    "poisson_diagnostics": "poisson_diagnostics/d06_poisson_diagnostics.json",
    "gallery_data": "gallery/gallery_data.json",
    "missed_tier_a": "gallery/missed_tier_a.json",
    "comparison_audit": "comparison_figure/comparison_audit_v2.json",
    "provenance": "provenance.json",
}

GRID_COLUMNS = [
    "theta_e", "psf_fwhm", "depth_5sig", "threshold", "threshold_type", "fpr_target", "source_mag_bin",
    "n_injections", "n_detected", "n_failed", "completeness", "ci68_lo", "ci68_hi", "ci95_lo", "ci95_hi",
    "mean_score", "mean_arc_snr", "sufficient",
]


class NotInTheseArtefacts(LenslibError, LookupError):
    """A claim names an object (a lens, a figure pick) of the authors' run that another run does not have:
    the claim cannot be recomputed on these artefacts (it is not an error of the artefacts or of the code)."""


class ArtefactChecksumError(LenslibError, ValueError):
    """An artefact's bytes are not those recorded for it (the published file the paper used, or what a
    recompute wrote)."""


VERIFY_MODES = ("error", "warn", "off")


class D06Artefacts:
    """The D06 result artefacts at one store. Reads are cached per instance.

    ``checksums`` (relative path → SHA-256) are checked on every read of a listed file: a mismatch raises
    :class:`ArtefactChecksumError` naming the file (``on_mismatch="error"``), or is printed to stderr and
    warned about (``"warn"``, for users who bring their own results), or not checked (``"off"``). Every
    read is also checked for structure (:mod:`lenslib.experiments.checks`)."""

    def __init__(self, store: Store, checksums: dict[str, str] | None = None, on_mismatch: str = "error"):
        if on_mismatch not in VERIFY_MODES:
            raise ValueError(f"on_mismatch must be one of {VERIFY_MODES}, got {on_mismatch!r}")
        self.store = store
        self.checksums = dict(checksums or {})
        self.on_mismatch = on_mismatch
        self.mismatches: list[str] = []
        self._cache: dict[str, Any] = {}

    # low level ------------------------------------------------------------
    def _bytes(self, key: str, needed_for: str) -> bytes:
        try:
            data = self.store.read_bytes(key)
        except ArtefactMissing as exc:
            raise ArtefactMissing(f"{exc}; needed for {needed_for}") from None
        want = self.checksums.get(key)
        if want and self.on_mismatch != "off":
            got = self.store.reads[key].sha256 if key in self.store.reads else None
            if got != want:
                msg = (f"{self.store.url(key)}: SHA-256 {got} is not the recorded {want} (the file differs from the "
                       f"one the paper used or the run wrote: truncated, edited or replaced)")
                if self.on_mismatch == "error":
                    raise ArtefactChecksumError(msg + "; set results_verify: warn to read it anyway")
                import sys
                import warnings

                self.mismatches.append(key)
                print(f"lenslib: WARNING: {msg}", file=sys.stderr)
                warnings.warn(msg, stacklevel=3)
        return data

    def json(self, key: str, needed_for: str = "this result") -> Any:
        if key not in self._cache:
            raw = self._bytes(key, needed_for)
            try:
                self._cache[key] = json.loads(raw)  # the artefacts use Python's NaN literal
            except json.JSONDecodeError as exc:
                raise ArtefactFormatError(f"{self.store.url(key)}: not valid JSON ({exc})") from None
        return self._cache[key]

    @staticmethod
    def _require(obj: dict, keys: list[str], where: str) -> None:
        if not isinstance(obj, dict):
            raise ArtefactFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in keys if k not in obj]
        if missing:
            raise ArtefactFormatError(f"{where}: missing key(s) {missing}")

    # artefacts ------------------------------------------------------------
    def tier_a_scoring(self) -> dict:
        key = PATHS["tier_a_scoring"]
        d = self.json(key, "the Tier-A recall table")
        self._require(d, ["real_lens", "negatives", "recall_by_tier"], self.store.url(key))
        checks.check_tier_a(d, self.store.url(key))
        return d

    def grid(self, condition: str) -> pd.DataFrame:
        """The selection-function CSV of one grid condition (``no_poisson`` or ``poisson``)."""
        if condition not in GRID_CONDITIONS + GRID_EXTRA:
            raise ValueError(f"grid condition must be one of {GRID_CONDITIONS + GRID_EXTRA}, got {condition!r}")
        key = PATHS["grid_csv"].format(condition=condition)
        if key not in self._cache:
            raw = self._bytes(key, f"the {condition} selection-function grid")
            try:
                df = pd.read_csv(io.BytesIO(raw), dtype={"source_mag_bin": str, "threshold_type": str})
            except Exception as exc:  # pandas raises several parser errors
                raise ArtefactFormatError(f"{self.store.url(key)}: cannot parse CSV ({exc})") from None
            missing = [c for c in GRID_COLUMNS if c not in df.columns]
            if missing:
                raise ArtefactFormatError(f"{self.store.url(key)}: missing column(s) {missing}")
            if df["sufficient"].dtype != bool:
                df["sufficient"] = df["sufficient"].astype(str).str.lower().eq("true")
            meta_key = PATHS["grid_meta"].format(condition=condition)
            meta = self.grid_meta(condition) if self.store.exists(meta_key) else None
            checks.check_grid(df, meta, self.store.url(key))
            self._cache[key] = df
        return self._cache[key]

    def has(self, name: str) -> bool:
        """Whether the artefact ``name`` of :data:`PATHS` is there (e.g. ``gate_results``, only in recomputes)."""
        return self.store.exists(PATHS[name])

    def gate_results(self) -> dict:
        key = PATHS["gate_results"]
        d = self.json(key, "the realism gate")
        self._require(d, ["sweep", "reference"], self.store.url(key))
        return d

    def grid_meta(self, condition: str) -> dict:
        key = PATHS["grid_meta"].format(condition=condition)
        d = self.json(key, f"the {condition} grid axes and thresholds")
        self._require(d, ["grid", "thresholds", "n_cells"], self.store.url(key))
        return d

    def fpr_threshold(self, fpr: float) -> float:
        """The grid's score threshold derived for the target false-positive rate ``fpr`` (E.2 step 1)."""
        derived = self.grid_meta("no_poisson").get("fpr_derived_thresholds") or {}
        for key, value in derived.items():
            if abs(float(key) - fpr) <= 1e-12 * max(1.0, fpr):
                return float(value)
        raise ArtefactFormatError(f"{self.store.url(PATHS['grid_meta'].format(condition='no_poisson'))}: no "
                                  f"threshold derived for FPR {fpr:g} (derived: {sorted(derived)})")

    def bright_arc(self, variant: str) -> dict:
        if variant not in BRIGHT_ARC_VARIANTS:
            raise ValueError(f"bright-arc variant must be one of {BRIGHT_ARC_VARIANTS}, got {variant!r}")
        key = PATHS["bright_arc"].format(variant=variant)
        d = self.json(key, f"the bright-arc {variant} variant")
        self._require(d, ["results_by_bin", "magnitude_bins"], self.store.url(key))
        checks.check_bright_arc(d, self.store.url(key))
        return d

    def probe_results(self) -> dict:
        key = PATHS["probe_results"]
        d = self.json(key, "the linear-probe table")
        self._require(d, ["linear_probe", "frechet_distance_per_layer", "frechet_distance", "median_scores"],
                      self.store.url(key))
        return d

    def probe_permutation(self) -> dict:
        key = PATHS["probe_permutation"]
        d = self.json(key, "the probe permutation/bootstrap summary")
        self._require(d, ["permutation_test", "bootstrap_ci"], self.store.url(key))
        return d

    @cached_property
    def _checkpoint(self) -> dict[str, np.ndarray]:
        key = PATHS["probe_checkpoint"]
        raw = self._bytes(key, "the linear-probe AUC recomputation")
        try:
            with np.load(io.BytesIO(raw), allow_pickle=True) as z:  # rng_state is an object array
                out = {k: z[k] for k in z.files}
        except Exception as exc:
            raise ArtefactFormatError(f"{self.store.url(key)}: not a readable .npz ({exc})") from None
        missing = [k for k in ("y_prob", "fold_aucs", "perm_aucs", "single_auc") if k not in out]
        if missing:
            raise ArtefactFormatError(f"{self.store.url(key)}: missing array(s) {missing}")
        return out

    def probe_checkpoint(self) -> dict[str, np.ndarray]:
        """Arrays of ``linear_probe/checkpoint.npz`` (y_prob, fold_aucs, perm_aucs, rng_state, ...)."""
        return self._checkpoint

    def poisson_diagnostics(self) -> dict:
        key = PATHS["poisson_diagnostics"]
        d = self.json(key, "the Poisson diagnostics")
        self._require(d, ["paired_delta", "conditioned_grid"], self.store.url(key))
        return d

    def gallery_data(self) -> dict:
        key = PATHS["gallery_data"]
        d = self.json(key, "the gallery and the Tier-A score distribution")
        self._require(d, ["real_lenses", "injections"], self.store.url(key))
        return d

    def missed_tier_a(self) -> list[dict]:
        return self.json(PATHS["missed_tier_a"], "the missed Tier-A table")

    def comparison_audit(self) -> dict:
        return self.json(PATHS["comparison_audit"], "the comparison figure")

    def provenance(self) -> dict:
        key = PATHS["provenance"]
        d = self.json(key, "the provenance page")
        self._require(d, ["files"], self.store.url(key))
        return d

    def thumbnails(self, names: list[str]) -> dict[str, bytes]:
        """PNG thumbnails by their gallery-relative path (``thumbs/REAL_001.png``)."""
        keys = [f"gallery/{n}" for n in names]
        try:
            raw = self.store.read_many(keys)
        except ArtefactMissing as exc:
            raise ArtefactMissing(f"{exc}; needed for the gallery") from None
        return {n: raw[k] for n, k in zip(names, keys, strict=True)}
