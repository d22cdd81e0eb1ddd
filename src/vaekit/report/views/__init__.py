"""The views of a saved run, each a function returning a ``View`` (a picture, a caption, the numbers behind it).

- ``base``: ``View``, and the paired-rows layout;
- ``space``: ``LatentSpace``, what the latent views share (ranking, fitted densities, the reference);
- ``data``: reconstructions, denoising;
- ``generation``: samples, class samples, context samples, the sample comparison, pseudo-inputs;
- ``latent``: interpolation, traversal, manifold, embedding;
- ``curves``: the training curves.

A view takes the ``RunContext`` (``vaekit.report.context``), or the ``LatentSpace`` over it where it
needs the ranking or a fitted density. Image-only views raise ``ConfigError`` for a run on tabular data.
"""
