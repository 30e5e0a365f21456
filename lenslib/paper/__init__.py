"""The paper as a build product: the numbers typed in a LaTeX source (:mod:`.numbers`), their audit against
the claims and the configs (:mod:`.audit`), generated LaTeX (:mod:`.generated`), and PDFs built with latexmk
(:mod:`.latex`, :mod:`.build`)."""
