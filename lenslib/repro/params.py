"""Parameter profiles: ``params/<profile>.yaml`` files, ``--set key=value`` overrides, validation.

A profile is a flat YAML mapping, so the same file feeds ``papermill -f params/<profile>.yaml``.
Every key must be declared in :data:`SCHEMA`; an unknown key, a wrong type or a missing required
value raises :class:`ParamError` naming the parameter and where it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lenslib import ParamError
from lenslib._util import PARAMS_DIR, REPO_ROOT, read_yaml_mapping, resolve_path

__all__ = ["SCHEMA", "Param", "ParamError", "load", "parse_set", "profile_path", "read_yaml_mapping",
           "resolve_path", "validate", "REPO_ROOT", "PARAMS_DIR", "FIGURE_FORMATS"]

FIGURE_FORMATS = ("pdf", "png", "svg")


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type check, default and what it is for."""

    kind: str
    doc: str
    default: Any = None
    required: bool = False
    nullable: bool = False
    check: Callable[[Any], str | None] | None = None  # returns an error message or None


def _formats(value: list) -> str | None:
    bad = [v for v in value if v not in FIGURE_FORMATS]
    return f"unsupported format(s) {bad}; choose from {list(FIGURE_FORMATS)}" if bad else None


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be > 0"


def _fractions(value: list) -> str | None:
    bad = [v for v in value if not 0 < v < 1]
    return f"values {bad} are not in (0, 1)" if bad else None


def _unit_interval(value: list) -> str | None:
    bad = [v for v in value if not 0 <= v <= 1]
    if bad:
        return f"values {bad} are outside [0, 1] (0 = Sérsic sources only, 1 = realistic only)"
    return None if value else "must list at least one mix"


def _nonempty(value: str) -> str | None:
    return "must not be empty" if not value.strip() else None


def _folder(value: str) -> str | None:
    if not value.strip():
        return "must not be empty (it would write into the repository root)"
    p = resolve_path(value)
    if p.resolve() == REPO_ROOT.resolve():
        return f"must not be the repository root ({value!r}); give a folder such as runs/<profile>"
    return None


def _uri(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if value.startswith("s3://") and not value[5:].split("/")[0]:
        return f"{value!r} has no bucket name (s3://bucket/prefix)"
    if "://" in value and not value.startswith("s3://"):
        return f"{value!r}: only s3:// URIs and local paths are supported"
    return None


def _endpoint(value: str) -> str | None:
    from urllib.parse import urlparse

    u = urlparse(value)
    if u.scheme not in ("http", "https") or not u.netloc:
        return f"{value!r} is not an http(s)://host[:port] URL"
    try:
        u.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return f"{value!r} has a malformed port"
    return None


def _range(value: list) -> str | None:
    return None if len(value) == 2 and value[0] <= value[1] else "must be [low, high]"


SCHEMA: dict[str, Param] = {
    "profile": Param("str", "name of the profile (the params file stem)", required=True),
    "description": Param("str", "one line saying what the profile is for", default=""),
    "profile_file": Param("str", "the params file these values came from, when it is not params/<profile>.yaml "
                          "(set by lenslib; the notebooks of a run read it)", nullable=True),
    "results_uri": Param(
        "str",
        "where the D06 result artefacts are: an s3:// URI or a local directory with the same layout "
        "(null with recompute: true: <output_dir>/results, where the recompute writes them)",
        nullable=True, check=_uri,
    ),
    "output_dir": Param("str", "where tables, figures and JSON of this run are written", required=True,
                        check=_folder),
    "results_checksums": Param("str", "SHA-256 list the result artefacts are checked against on every read "
                               "(params/d06_checksums.json: the published D06 files; null: what the folder's own "
                               "provenance.json recorded, if anything)", nullable=True, check=_nonempty),
    "results_verify": Param("str", "on a checksum mismatch: error (stop, naming the file), warn (read it anyway, "
                            "loudly: for results you bring yourself) or off", default="error",
                            check=lambda v: None if v in ("error", "warn", "off")
                            else "must be 'error', 'warn' or 'off'"),
    "figure_formats": Param("list[str]", "file formats of every figure", default=["pdf", "png"], check=_formats),
    "figure_dpi": Param("int", "resolution of raster figures", default=150, check=_positive),
    "s3_region": Param("str", "AWS region of the bucket", default="us-east-2"),
    "s3_endpoint_url": Param("str", "S3 endpoint override (a local S3 server, another provider)", nullable=True,
                             check=_endpoint),
    "s3_anonymous": Param("bool", "read the bucket without credentials (unsigned requests)", default=True),
    "s3_max_attempts": Param("int", "attempts per S3 request before giving up", default=4, check=_positive),
    "s3_connect_timeout": Param("float", "seconds to wait for an S3 connection", default=5.0,
                                check=lambda v: None if 0 < v <= 3600 else "must be in (0, 3600] seconds"),
    "claims_file": Param("str", "the claims registry", default="params/claims.yaml"),
    "paper_tex": Param("str", "the authors' LaTeX source (its folder must hold the class and .bst files); "
                       "rebuilt with this run's figures and audited number by number", nullable=True),
    "paper_configs": Param("str", "the folder of the authors' configs (training, priors, negatives): the audit "
                           "checks the paper's method constants against them", nullable=True),
    "paper_numbers": Param("str", "the numbers audit map (a YAML file or a folder of them)",
                           default="params/paper_numbers"),
    "paper_pdf": Param("bool", "build the PDFs (the authors' paper, the reproduction report) at the end of a run "
                       "when TeX is installed", default=True),
    # injection section
    "injection_priors": Param("str", "injection priors YAML (the authors' injection_priors.yaml format)",
                              default="params/injection_priors.yaml"),
    "injection_seed": Param("int", "seed of every injection draw and of the Poisson noise", default=1337),
    "injection_sampling": Param("str", "ray sampling: full (the paper's) or adaptive (same images, faster)",
                                default="full", check=lambda v: None if v in ("full", "adaptive")
                                else "must be 'full' or 'adaptive'"),
    "injection_gain": Param("float", "Poisson gain of the arc shot noise, e-/nmgy", default=150.0,
                            check=lambda v: None if v > 0 else "must be > 0"),
    "example_hosts": Param("list[str]", "host cutouts (paths or s3:// URIs) of the example injections",
                           default=[]),
    "example_psf_fwhm_r": Param("float", "r-band PSF FWHM (arcsec) assumed for the example hosts", default=1.3),
    "example_psfdepth_r": Param("float", "r-band PSF depth (nmgy^-2) assumed for the example hosts (SNR)",
                                default=2500.0),
    "example_source_r_mag": Param("float", "source r magnitude of the example injections (bright, to be seen)",
                                  default=21.0),
    # data section
    "data_uri": Param("str", "root of the project's data (s3://bucket/prefix or a local mirror): "
                      "cutouts/, manifests/, ...", default="s3://darkhaloscope/stronglens_calibration/", check=_uri),
    "catalogue_desi": Param("str", "DESI lens-candidate catalogue CSV (positives)",
                            default="../shared/data/catalogs/desi_candidates.csv"),
    "catalogue_lenscat": Param("str", "external known-lens compilation CSV (lenscat format)", nullable=True),
    "manifest": Param("str", "training manifest parquet, a key under data_uri (null: no manifest statistics)",
                      nullable=True),
    "split_seed": Param("int", "seed of the SHA-256 HEALPix split rule", default=42),
    "prior_draws": Param("int", "number of draws shown against the priors", default=5000, check=_positive),
    # lens finders (notebooks/methods_model.md)
    "finder_config": Param("str", "training config YAML (dataset/augment/train/inject; the authors' format)",
                           default="params/finder_demo.yaml"),
    "finder_set": Param("list[str]", "overrides of the training config, 'section.key=value'", default=[]),
    "finder_checkpoint": Param("str", "a trained checkpoint to evaluate instead of training (null: train)",
                               nullable=True),
    "finder_manifest": Param("str", "manifest to train/evaluate on, a key under data_uri or a local path "
                                    "(null: a synthetic mini-survey is generated)", nullable=True),
    "synthetic_negatives": Param("int", "non-lenses in the synthetic mini-survey", default=400, check=_positive),
    "synthetic_positives": Param("int", "lenses in the synthetic mini-survey", default=200, check=_positive),
    "synthetic_seed": Param("int", "seed of the synthetic mini-survey", default=42),
    "finder_fprs": Param("list[float]", "target false-positive rates for score thresholds",
                         default=[0.01, 0.001]),
    # recompute (lenslib.repro.recompute): the experiments run from the engines, writing D06 artefacts
    "recompute": Param("bool", "run the experiments (finder_checkpoint on manifest, under data_uri) and read "
                               "their artefacts instead of published ones", default=False),
    "device": Param("str", "torch device of the recompute (null: cuda when present, else cpu)", nullable=True),
    "executor": Param("str", "where the heavy steps (grid shards, bright-arc bins) run: 'local' (this process) or "
                             "'dask' (tasks on a Dask cluster; the artefacts are the same)", default="local",
                      check=lambda v: None if v in ("local", "dask") else "must be 'local' or 'dask'"),
    "dask_scheduler": Param("str", "address of the Dask scheduler (tcp://host:8786) when executor is 'dask' "
                                   "(null: a LocalCluster on this machine)", nullable=True),
    "dask_workers": Param("int", "worker processes of the LocalCluster (null: one per core, or one per GPU with "
                                 "dask-cuda)", nullable=True, check=_positive),
    "fpr_negatives": Param("int", "validation negatives scored for the FPR thresholds (paper 50 000)",
                           default=50_000, check=_positive),
    "fpr_targets": Param("list[float]", "target FPRs of the derived thresholds", default=[0.001, 0.0001],
                         check=_fractions),
    "tier_a_negatives": Param("int", "validation negatives of the Tier-A FPR column (paper 3000)", default=3000,
                              check=_positive),
    "grid_injections_per_cell": Param("int", "injections per non-empty grid cell (paper 500)", default=500,
                                      check=_positive),
    "grid_host_max": Param("int", "validation negatives in the grid's host pool (paper 20 000)", default=20_000,
                           check=_positive),
    "grid_seed": Param("int", "seed of the grid's host choices, draws and Poisson noise (paper 1337)", default=1337),
    "grid_max_retries": Param("int", "failed attempts allowed per injection of a cell (paper 5)", default=5,
                              check=lambda v: None if v >= 0 else "must be ≥ 0"),
    "grid_shard_injections": Param("int", "injections per grid shard (the unit of resume)", default=4096,
                                   check=_positive),
    "bright_arc_hosts": Param("int", "hosts of the bright-arc test (paper 200)", default=200, check=_positive),
    "bright_arc_seed": Param("int", "seed of the bright-arc test (paper 42)", default=42),
    "probe_samples": Param("int", "injections per population of the linear probe (paper 500)", default=500,
                           check=_positive),
    "probe_permutations": Param("int", "permutations of the probe's AUC test (paper 1000)", default=1000,
                                check=_positive),
    "probe_bootstraps": Param("int", "bootstrap resamples of the probe's AUC (paper 5000)", default=5000,
                              check=_positive),
    "probe_seed": Param("int", "seed of the feature-space analysis (paper 42)", default=42),
    "probe_umap": Param("bool", "compute the UMAP of the embeddings (paper Figure 2)", default=True),
    # the synthetic world (lenslib.synthetic.demo) and the realism gate (lenslib.experiments.gate)
    "synthetic_world": Param("bool", "make the synthetic survey under data_uri and train finder_config on it into "
                                     "finder_checkpoint before the recompute (the demo profile)", default=False),
    "gate": Param("bool", "run the realism gate: the grid again with realistic sources, and the linear probe "
                          "for each of gate_mixes", default=False),
    "gate_mixes": Param("list[float]", "fractions of realistic-source light in the gate's injected families "
                                       "(0 = Sérsic, 1 = realistic)", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                        check=_unit_interval),
    "gate_samples": Param("int", "injections per family of the gate's probe", default=150, check=_positive),
    "gate_injections_per_cell": Param("int", "injections per cell of the realistic-source grid", default=10,
                                      check=_positive),
    "gate_seed": Param("int", "seed of the gate's draws", default=2027),
    "gate_min_arc_snr": Param("float", "compare clear arcs only: Tier-A real lenses against injections whose arc SNR "
                                       "passes this cut (null: all lenses against all injections)", nullable=True),
    "gate_theta_e": Param("list[float]", "θ_E range (arcsec) of the gate's injections: that of the real lenses",
                          default=[0.8, 2.5], check=_range),
    "gate_source_r_mag": Param("list[float]", "source r-magnitude range of the gate's injections: that of the real "
                                              "lenses", default=[21.0, 23.5], check=_range),
}

_TYPES: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[float]": lambda v: isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                         for x in v),
}


def validate(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check ``values`` against :data:`SCHEMA`, fill defaults, and return a new dict.

    ``source`` names where the values came from (a file, ``--set``), for the error message.
    """
    unknown = sorted(set(values) - set(SCHEMA))
    if unknown:
        raise ParamError(
            f"{source}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"known parameters are: {', '.join(sorted(SCHEMA))}"
        )
    out: dict[str, Any] = {}
    for name, spec in SCHEMA.items():
        if name not in values:
            if spec.required:
                raise ParamError(f"{source}: required parameter {name!r} is missing ({spec.doc})")
            out[name] = spec.default
            continue
        value = values[name]
        if spec.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value is None:
            if spec.nullable:
                out[name] = None
                continue
            raise ParamError(f"{source}: parameter {name!r} must be {spec.kind}, got null")
        if not _TYPES[spec.kind](value):
            raise ParamError(
                f"{source}: parameter {name!r} must be {spec.kind}, got {type(value).__name__} {value!r}"
            )
        if spec.kind == "str" and name != "description" and not value.strip():
            raise ParamError(f"{source}: parameter {name!r} must not be empty"
                             + (" (use null for none)" if spec.nullable else f" ({spec.doc})"))
        if spec.check is not None and (msg := spec.check(value)):
            raise ParamError(f"{source}: parameter {name!r} {msg}")
        out[name] = value
    if out["results_uri"] is None and not out["recompute"]:
        raise ParamError(f"{source}: parameter 'results_uri' is missing (give the published D06 artefacts, "
                         f"or set recompute: true to compute them)")
    return out


def profile_path(profile: str) -> Path:
    """The params file of a profile name, or the path itself if ``profile`` is a file (anywhere: :func:`load`
    records it as ``profile_file`` so that the notebooks of a run read the same file)."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    path = PARAMS_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml") if p.stem != "claims")
        raise ParamError(f"unknown profile {profile!r}: no file {path} (profiles: {', '.join(known)})")
    return path


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` overrides; values are read as YAML scalars (``true``, ``3``, ``[pdf]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ParamError(f"--set {item!r}: value is not valid YAML: {exc}") from None
    return out


def open_param_store(params: Mapping[str, Any], key: str):
    """The store at the URI parameter ``key`` (``results_uri``, ``data_uri``) with the profile's S3 settings."""
    from lenslib.data.storage import open_store

    return open_store(params[key], region=params["s3_region"], endpoint_url=params["s3_endpoint_url"],
                      anonymous=params["s3_anonymous"], max_attempts=params["s3_max_attempts"],
                      connect_timeout=params["s3_connect_timeout"])


def open_artefacts(params: Mapping[str, Any], store=None):
    """The D06 artefacts at ``results_uri`` (or ``store``), checked on every read against ``results_checksums``
    (or the folder's own recorded checksums) as ``results_verify`` says."""
    from lenslib.experiments.artefacts import D06Artefacts
    from lenslib.experiments.verify import checksums_for

    store = store or open_param_store(params, "results_uri")
    mode = params.get("results_verify", "error")
    sums = {} if mode == "off" else checksums_for(store, params.get("results_checksums"))
    return D06Artefacts(store, sums, mode)


def load(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load a profile, apply overrides, validate. Overrides are validated as ``--set``."""
    path = profile_path(profile)
    values = read_yaml_mapping(path)
    validate(values, source=str(path))  # the file on its own must be valid
    merged = {**values, **(overrides or {})}
    if path.resolve() != (PARAMS_DIR / f"{values.get('profile')}.yaml").resolve():
        merged["profile_file"] = str(path.resolve())
    return validate(merged, source=f"{path} with --set {dict(overrides or {})}")
