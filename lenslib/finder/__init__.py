"""The CNN lens finders.

- ``models``       the bottlenecked ResNet (and torchvision's ResNet18 / EfficientNetV2-S), weights loading
- ``preprocess``   the ``raw_robust`` normalisation the finders were trained with
- ``config``       training configs in the authors' YAML format (dataset / augment / train / inject)
- ``datasets``     the training Dataset with the paper's seeded augmentation
- ``training``     the training loop (accumulation, schedules, AMP, bit-exact resume)
- ``checkpoints``  checkpoints in lenslib's and the authors' formats
- ``scoring``      scores and embeddings of images and manifests, FPR thresholds
- ``plots``        tables and figures of the lens-finder section

Modules are imported on demand (``from lenslib.finder import training``).
"""
