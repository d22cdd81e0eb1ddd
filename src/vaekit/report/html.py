"""The one-file HTML report of a run: every view as a section, with the settings and metrics as tables.

``write_report`` gathers the sections (a view that cannot be drawn becomes a one-line note) and writes
RUN/report.html; images are embedded as data URIs, so the file needs no other file and no network.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vaekit.plotting as plotting
from vaekit.checkpoint import atomic_write_bytes
from vaekit.errors import ConfigError, VaekitError
from vaekit.evaluation import elbo_terms, summarize
from vaekit.latent_layers import describe_latent
from vaekit.models.vampprior import vampprior_of
from vaekit.report.run_views import RunViews
from vaekit.report.views.base import View
from vaekit.runs import metric_terms
from vaekit.settings import takes_effect
from vaekit.version import __version__

log = logging.getLogger(__name__)

REPORT = "report.html"


@dataclass
class Section:
    id: str
    title: str
    body: str = ""
    note: str = ""  # a one-line note shown instead of a skipped view
    half: bool = False  # shares a row with the next (or previous) half-width section


@dataclass
class _Report:
    sections: list[Section] = field(default_factory=list)

    def add(self, id: str, title: str, make, *, image: bool = True, half: bool = False) -> None:
        """Run ``make()`` (-> View) into a section; a view that cannot be drawn becomes a one-line note."""
        try:
            view = make()
        except VaekitError as exc:
            self.sections.append(Section(id, title, note=str(exc), half=half))
            log.info("report: %s skipped: %s", title.lower(), exc)
            return
        self.sections.append(Section(id, title, body=figure_html(view, pixelated=image), half=half))


def figure_html(view: View, pixelated: bool = True) -> str:
    """A ``<figure>`` of the view's picture (a PNG data URI) and its caption."""
    data = base64.b64encode(plotting.png_bytes(view.picture)).decode("ascii")
    h, w = view.picture.shape[:2]
    cls = "grid" if pixelated else "plot"
    return (
        f'<figure><img class="{cls}" width="{w}" height="{h}" alt="{html.escape(view.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(view.caption)}</figcaption></figure>"
    )


def write_report(run, path: str | Path | None = None, *, split: str = "test", seed: int = 0, layer: int | None = None) -> Path:
    """Write the one-file HTML report of ``run`` (default RUN/report.html) and return its path.

    Sections: configuration, metrics (evaluation of ``split`` and the training summary), training
    curves, reconstructions, a semi-supervised model's confusion matrix, a class-conditional model's
    analogies and samples by class, samples (prior vs fitted code densities; a sequence model's strings or
    molecules, and the neighbourhood of one), interpolation, traversal,
    for data made from known factors every unit's traversal labelled by the factor it captures and the
    units' information about the factors, manifold, latent embedding, and denoising for a run trained
    with input noise. Images are
    embedded as data URIs, so the file opens offline. layer: the stochastic layer of a hierarchical
    model the latent views vary (default: the top).
    """

    started = time.perf_counter()
    views = RunViews(run, split=split, seed=seed, layer=layer)
    _ = views.data  # read first: data that cannot be read is one error, not a note in every section that shows it
    model = run.model
    report = _Report()
    report.sections.append(Section("config", "Configuration", body=config_html(run)))
    report.sections.append(Section("metrics", "Metrics", body=metrics_html(run, views)))
    report.add("curves", "Training curves", views.curves, image=False)
    drawn = not views.is_sequences  # pictures of pixels (shown pixelated), or of molecules and strings
    report.add("reconstructions", "Reconstructions", lambda: views.reconstructions(8 if views.is_sequences else 32), image=drawn)
    if model.classifier is not None:
        report.add("confusion", "Classification", views.confusion, image=False)
    if views.classes:
        report.add("analogies", "Analogies", lambda: views.analogies(10))
        report.add("class-samples", "Samples by class", lambda: views.class_samples(10))
    elif model.latent.conditional:
        report.add("context-samples", "Samples across the context", lambda: views.context_samples())
    if views.is_sequences:
        report.add("samples", "Samples", lambda: views.samples(16), image=False)
        report.add("neighbourhood", "Around an example", lambda: views.neighbourhood(0, 11), image=False)
    else:
        report.add("samples", "Samples", lambda: views.sample_comparison(25))
    if _has_pseudo_inputs(model) and views.is_image:
        report.add("pseudo-inputs", "VampPrior pseudo-inputs", lambda: views.pseudo_inputs(32))
    a, b = _pair(views) if views.is_image else (0, 1)
    report.add("interpolation", "Interpolation", lambda: views.interpolation(a, b, steps=8 if views.is_sequences else 10), image=drawn)
    report.add("traversal", "Latent traversal", lambda: views.traversal(8, steps=11, at="input", index=a))
    if views.data.info.get("factors"):
        report.add("factor-traversal", "Units and factors", lambda: views.factor_traversal(index=a))
        report.add("factor-information", "What each unit knows", views.factor_information, image=False)
    report.add("manifold", "Manifold", lambda: views.manifold(min_cell=28), half=True)  # the grid `vaekit manifold` draws
    report.add("embedding", "Latent embedding", lambda: views.embedding(size=(5.4, 4.6)), image=False, half=True)
    if run.config.train.noise != "none":
        report.add("denoising", "Denoising", lambda: views.denoising(8))
    path = Path(path) if path is not None else run.path / REPORT
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror}") from None
    title = f"vaekit report: {run.path.name}"
    summary = (
        f"{model.config.kind.upper()} ({model.config.arch}, {describe_latent(model)}, {model.config.likelihood} likelihood, "
        f"{model.config.prior} prior{_condition_phrase(run, views)}) on {run.config.data.source}, "
        f"data shape {tuple(model.input_shape)}"
    )
    atomic_write_bytes(path, _page(title, summary, run, report.sections).encode("utf-8"))
    log.debug("report written in %.1f s", time.perf_counter() - started)
    return path


def _has_pseudo_inputs(model) -> bool:
    """Whether the model's prior has pseudo-inputs to show (a VampPrior, over z or a hierarchy's top layer)."""
    try:
        vampprior_of(model)
    except ConfigError:
        return False
    return True


def _pair(views: RunViews) -> tuple[int, int]:
    """Two split indices to interpolate between: the first two examples with different labels."""
    y = views.split.y
    if y is None or len(y) < 2:
        return 0, min(1, len(views.split) - 1)
    different = (y != y[0]).nonzero()
    return 0, int(different[0]) if len(different) else 1


def config_html(run, max_rows: int = 12) -> str:
    """The settings that took effect (``vaekit.settings``: not a mixture's component count with a
    normal prior, say) as key/value tables, one per config section (a long one continues in a second table)."""
    parts = []
    for section, values in run.config.to_dict().items():
        if not isinstance(values, dict):
            continue
        items = [(k, v) for k, v in values.items() if takes_effect(run.config, section, k)]
        for start in range(0, len(items), max_rows):
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt_value(v))}</td></tr>" for k, v in items[start : start + max_rows]
            )
            caption = section if start == 0 else f"{section} (continued)"
            parts.append(f'<table class="kv"><caption>{html.escape(caption)}</caption>{rows}</table>')
    return f'<div class="tables">{"".join(parts)}</div>'


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v) if v else "()"
    if v is None:
        return "—"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _evaluation_html(run, views: RunViews) -> list[str]:
    """The split's negative ELBO, reconstruction, KL and bits/dim as a table (and why bits/dim is n/a, where it is)."""
    from vaekit.compression.rate import code_kind  # scipy and constriction: imported only where a report is written

    out = []
    try:
        terms = elbo_terms(run.model, views.examples(views.split), seed=views.seed)  # a conditional model's: of x given y
        s = summarize(terms, math.prod(run.model.input_shape))
        kind, why = code_kind(run.model, views.split.x)  # bits/dim only where the negative ELBO is a code length
        per_dim = f"{s['bits_per_dim']:.4f}" if kind == "bits-back" else "—"
        out.append(
            f'<table class="num"><caption>{html.escape(views.split_name)} split, {s["examples"]} examples</caption>'
            "<tr><th>negative ELBO</th><th>reconstruction</th><th>KL</th><th>bits/dim</th></tr>"
            f"<tr><td>{s['neg_elbo']:.3f} ± {s['neg_elbo_stderr']:.3f}</td><td>{s['reconstruction']:.3f}</td>"
            f"<td>{s['kl']:.3f}</td><td>{per_dim}</td></tr></table>"
        )
        if kind == "dequantized":
            why = "a continuous likelihood on 8-bit data: 'vaekit evaluate' gives its code length after uniform dequantization"
        if kind != "bits-back":
            out.append(f'<p class="note">bits/dim n/a: {html.escape(why)}</p>')
    except VaekitError as exc:
        out.append(f'<p class="note">evaluation skipped: {html.escape(str(exc))}</p>')
    return out


def _training_html(rows: list[dict]) -> list[str]:
    """The training metrics (one dict per epoch): the first, best and last epochs, and all of them folded away."""
    if not rows:
        return ['<p class="note">no training metrics recorded</p>']
    best = min(rows, key=lambda r: r.get("valid_loss", math.inf))
    short = {"neg_elbo": "−ELBO", "reconstruction": "rec.", "kl": "KL"}  # the ELBO family's; another term by its name
    terms = [t for t in metric_terms(rows) if t != "loss"]
    cols = [("epoch", "epoch", "{:.0f}"), ("β", "beta", "{:.3g}")]
    for term in terms:
        label = short.get(term, term.replace("_", " "))
        cols += [(f"train {label}", f"train_{term}", "{:.3f}"), (f"valid {label}", f"valid_{term}", "{:.3f}")]

    def row(r, name=""):
        cells = "".join(f"<td>{fmt.format(r[key]) if key in r else '—'}</td>" for _, key, fmt in cols)
        return f"<tr>{f'<th>{name}</th>' if name is not None else ''}{cells}</tr>"

    head = "<tr><th></th>" + "".join(f"<th>{c}</th>" for c, _, _ in cols) + "</tr>"
    every = "".join(row(r, None) for r in rows)
    return [
        f'<table class="num"><caption>training, per example (nats)</caption>{head}'
        f"{row(rows[0], 'first epoch')}{row(best, 'best (weights kept)')}{row(rows[-1], 'last epoch')}</table>",
        f'<details><summary>all {len(rows)} epochs</summary><table class="num"><tr>'
        + "".join(f"<th>{c}</th>" for c, _, _ in cols)
        + f"</tr>{every}</table></details>",
    ]


def metrics_html(run, views: RunViews) -> str:
    """The metrics section: the evaluation of the views' split and the training summary, as tables."""
    out = _evaluation_html(run, views) + _training_html(run.metrics())
    details = [p for p in out if p.startswith("<details")]
    return f'<div class="tables">{"".join(p for p in out if p not in details)}</div>{"".join(details)}'


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#222;background:#fafafa;margin:0}
main{max-width:1240px;margin:0 auto;padding:20px 20px 40px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.sub{color:#555;margin:0 0 10px}nav{margin:0 0 14px;font-size:14px}nav a{margin-right:12px;color:#1a5fb4;text-decoration:none}
section{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:12px 18px;margin:0 0 14px}
.pair{display:flex;flex-wrap:wrap;gap:14px;margin:0 0 14px}.pair>section{flex:1 1 540px;min-width:0;margin:0}
figure{margin:0}figcaption{color:#555;font-size:13.5px;margin-top:6px;max-width:900px}
img{max-width:100%;height:auto;display:block}img.grid{image-rendering:pixelated}
table{border-collapse:collapse;font-size:13px;margin:0 0 8px}caption{text-align:left;font-weight:600;padding:2px 0 3px}
th,td{padding:2px 9px;border-bottom:1px solid #eee;text-align:left}table.num td{text-align:right;font-variant-numeric:tabular-nums}
.tables{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}table.kv th{font-weight:500;color:#444}
.note{color:#8a5300;background:#fff7e6;border-left:3px solid #e5a50a;padding:6px 10px;margin:0}
details summary{cursor:pointer;color:#1a5fb4;margin:4px 0}footer{color:#777;font-size:12.5px}
"""


def _page(title: str, summary: str, run, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for i, s in enumerate(sections):
        content = s.body if not s.note else f'<p class="note">skipped: {html.escape(s.note)}</p>'
        opens = s.half and not (i > 0 and sections[i - 1].half)
        closes = s.half and not (i + 1 < len(sections) and sections[i + 1].half)
        body.append(
            ('<div class="pair">' if opens else "")
            + f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{content}</section>'
            + ("</div>" if closes else "")
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
        f'<h1>{html.escape(title)}</h1><p class="sub">{html.escape(summary)}<br>'
        f"run directory: <code>{html.escape(str(run.path))}</code></p>"
        f"<nav>{nav}</nav>{''.join(body)}"
        f"<footer>written by vaekit {__version__} on {time.strftime('%Y-%m-%d %H:%M')}</footer></main></body></html>"
    )


def _condition_phrase(run, views: RunViews) -> str:
    """``, conditioned on the class label`` / ``, conditioned on age, income``, or nothing for an unconditional model."""
    if not run.model.latent.conditional:
        return ""
    if views.classes:
        return ", conditioned on the class label"
    return ", conditioned on " + ", ".join(views.ctx.preprocessing.get("context_columns") or ["a context"])
