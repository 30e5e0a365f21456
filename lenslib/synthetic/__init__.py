"""A synthetic DR10-like survey with known truth, in the real file formats and the bucket's layout.

- ``scene``   what a cutout holds: hosts, neighbours, stars, confusers, noise, masked pixels
- ``survey``  the survey: lenses with realistic sources, tiers, manifest, truth table, catalogue
- ``demo``    the demo world of the ``demo`` profile: survey → finder → everything the recompute reads

Nothing here is a paper result: the mini-survey exists so the pipeline can run anywhere in minutes, on data
whose truth is known.
"""

from lenslib.synthetic.survey import MANIFEST, SurveyError, SurveySpec, make_survey

__all__ = ["MANIFEST", "SurveyError", "SurveySpec", "make_survey"]
