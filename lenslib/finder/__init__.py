"""The CNN lens finders.

- ``models``       the bottlenecked ResNet, lenslib's EfficientNetV2-S, torchvision's ResNet18; weights loading
- ``efficientnet`` EfficientNetV2-S in plain torch with torchvision's parameter names (the paper's model)
- ``preprocess``   the ``raw_robust`` normalisation the finders were trained with
- ``config``       training configs in the authors' YAML format (dataset / augment / train / inject)
- ``datasets``     the training Dataset with the paper's seeded augmentation
- ``training``     the training loop (accumulation, schedules, AMP, bit-exact resume)
- ``resume``       its checkpoint and resume bookkeeping (best AUC and epoch, the metrics log, run checks)
- ``checkpoints``  checkpoints in lenslib's and the authors' formats
- ``scoring``      scores and embeddings of images and manifests, FPR thresholds
- ``plots``        tables and figures of the lens-finder section

Modules are imported on demand (``from lenslib.finder import training``).
"""
