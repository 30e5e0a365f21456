"""The paper's experiments, one module each, with the readers of their result artefacts.

- ``artefacts``   readers of the D06 result artefacts (the authors' published files, or a recompute's)
- ``tier_a``      Table 2: recall of the real Tier-A lenses
- ``grid``        Tables 3–4, Figure 1: the injection selection function (θ_E × PSF × depth)
- ``poisson``     Tables 7–8: the effect of the arcs' Poisson noise, paired per injection
- ``bright_arc``  Table 6, Figure 4: bright-arc detection rates of six variants × 8 magnitude bins
- ``probe``       Table 5, Figures 2–3: the linear probe, Fréchet distances, score distributions
- ``gallery``     Figure 5, Appendix B: the comparison figure, the gallery, the missed Tier-A lenses
- ``gate``        the realism gate: probe AUC and Fréchet distances of any injections against real lenses;
                  completeness matched to the real lenses' brightness
- ``figures``     the paper's figures drawn from the artefacts (and the realism gate's)

Modules are imported on demand (``from lenslib.experiments import grid``).
"""
