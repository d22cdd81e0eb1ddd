"""Views of a saved run, and the one-file HTML report that gathers them.

- ``context``: ``RunContext``, what a view of a run looks at: the split (with its fallback), the
  context a conditional model decodes with, whether the data are images, the class names, the seed;
  the explorer (``vaekit.explore``) holds one too, so both follow one policy;
- ``views``: each figure a function returning a ``View`` (a uint8 picture, a caption, and the tensors
  behind it), built from ``vaekit.latent`` / ``vaekit.generation`` (numbers) and ``vaekit.plotting``
  (pictures), grouped by what they show: ``data``, ``generation``, ``latent``, ``curves``;
- ``run_views``: ``RunViews(run)``, every view of one run as a method; the figure commands save one
  view as a PNG;
- ``html``: ``write_report``, which embeds them all in RUN/report.html, a file that needs no other
  file and no network to open.

Image-only views (reconstructions, samples, interpolation, traversal, manifold, denoising) raise
``ConfigError`` for a run on tabular data; the report shows a one-line note in their place.
"""

from vaekit.report.context import RunContext, is_image_shape
from vaekit.report.html import REPORT, Section, config_html, figure_html, metrics_html, write_report
from vaekit.report.run_views import RunViews
from vaekit.report.views.base import View
from vaekit.report.views.latent import MANIFOLD_GRID, Embedding
from vaekit.report.views.space import RANK_SAMPLE, LatentSpace

_config_html, _metrics_html = config_html, metrics_html  # the names the tests import

__all__ = [
    "MANIFOLD_GRID",
    "RANK_SAMPLE",
    "REPORT",
    "Embedding",
    "LatentSpace",
    "RunContext",
    "RunViews",
    "Section",
    "View",
    "config_html",
    "figure_html",
    "is_image_shape",
    "metrics_html",
    "write_report",
]
