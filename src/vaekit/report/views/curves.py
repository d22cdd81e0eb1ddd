"""The training curves of a run, from its metrics.csv."""

from __future__ import annotations

import vaekit.plotting as plotting
from vaekit.errors import ConfigError
from vaekit.report.context import RunContext
from vaekit.report.views.base import View


def curves(ctx: RunContext) -> View:
    """Per-epoch negative ELBO, reconstruction, KL and β; the result: the metrics rows (one dict per epoch)."""
    run = ctx.run
    rows = run.metrics()
    if not rows:
        raise ConfigError(f"{run.path} has no training metrics yet")
    title = f"{run.path.name}: {run.config.model.kind.upper()}, {len(rows)} epochs"
    caption = "Per-epoch negative ELBO, reconstruction and KL (nats per example; solid train, dashed validation) and the KL weight β." + (
        " A plain autoencoder has no KL term: its KL and β are 0." if ctx.model.latent.deterministic else ""
    )
    return View(plotting.training_curves(rows, title=title), caption, rows)
