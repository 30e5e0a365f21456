"""The compute side of the paper's experiments: each runs the engines and writes artefacts in the D06 layout.

- ``inputs``      the manifest, cutouts, finder checkpoint and priors of a recompute, through the data layer;
                  the scorer (model + preprocessing on the device)
- ``tier_a``      §E.1: FPR thresholds from the validation negatives, Tier-A recall → ``tier_a_scoring/``
- ``grid``        §E.2: the selection-function grid with and without Poisson noise → ``grid_<condition>/``
- ``bright_arc``  §E.3: 200 paired hosts × 8 magnitude bins × six variants → ``ba_<variant>/``
- ``poisson``     §E.5: paired per-injection score changes, sign and McNemar tests → ``poisson_diagnostics/``
- ``feature_space`` §E.4 steps 1–7: the four populations (Tier A, low/high-β_frac injections, negatives), embedded
- ``probe``       §E.4 steps 8–13: probe, permutations, bootstraps, Fréchet distances, UMAP → ``linear_probe/``
- ``gallery_inputs`` §E.6 inputs: Tier-A lenses with their scores, grid injections re-rendered from their rows
- ``gallery``     §E.6: thumbnails, the gallery page, the missed Tier-A table, the comparison figure → ``gallery/``
- ``gate``        the realism gate: the grid with realistic sources, the probe over source mixes
                  → ``grid_realistic_no_poisson/``, ``realism_gate/``
- ``provenance``  §E.7: SHA-256 of every input, code version, machine → ``provenance.json``

The book reads what these write through the same readers (:mod:`lenslib.experiments.artefacts`) as the
published files.
"""
