"""Views of the classes: Kingma et al. 2014's analogies (a style written as every class) for a model
conditioned on class labels, and a semi-supervised model's confusion matrix."""

from __future__ import annotations

import torch

import vaekit.plotting as plotting
from vaekit.classification import classify
from vaekit.errors import ConfigError
from vaekit.generation import analogies as analogy_images
from vaekit.report.context import RunContext
from vaekit.report.views.base import View


def analogies(ctx: RunContext, n: int = 10) -> View:
    """Rows: ``n`` examples of the split (the first of each class in turn), each style z = E_q[z|x, y] decoded
    as every class (columns), after the input itself."""
    ctx.require_images("the analogies figure")
    if not ctx.classes:
        raise ConfigError("analogies need a model conditioned on class labels (--model m2, or --condition label)")
    examples = ctx.examples(ctx.split)  # its labels, or the classes the classifier finds for unlabelled examples
    labels = examples.model_context
    rows = one_per_class(labels, n)
    chosen = examples.subset(rows)
    x = chosen.x.float()
    images = analogy_images(ctx.model, chosen).cpu()  # (n, K, *shape)
    picture = plotting.labelled_grid(
        torch.cat([x.unsqueeze(1), images], 1),
        row_labels=[f"#{int(i)} ({ctx.class_name(int(labels[i]))})" for i in rows],
        col_labels=["input", *(ctx.class_name(c) for c in range(ctx.classes))],
    )
    caption = (
        f"Analogies: each row is one {ctx.split_name} example's style, its posterior mean z given its class, "
        "decoded as every class (columns), beside the input."
    )
    return View(picture, caption, images)


def one_per_class(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Rows (≤ n,) of ``labels`` (N,): the first example of each class in turn (0, 1, ...), then the next of each."""
    order = [(labels == c).nonzero().flatten() for c in labels.unique().tolist()]
    picked = [rows[j] for j in range(max(map(len, order))) for rows in order if j < len(rows)]
    return torch.stack(picked[:n])


def confusion(ctx: RunContext) -> View:
    """A semi-supervised model's confusion matrix on the split's labelled examples, with its error."""
    model = ctx.model
    if model.classifier is None:
        raise ConfigError("a confusion matrix needs a classifier q(y|x) (--model m2)")
    result = classify(model, ctx.split)
    if result.error is None:
        raise ConfigError(f"the {ctx.split_name} split has no labels to compare the classifier's predictions with")
    names = [ctx.class_name(c) for c in range(model.classes)]
    title = f"{ctx.split_name} split: error {100 * result.error:.2f}% on {int(result.known.sum())} labelled examples"
    caption = (
        f"The classifier q(y|x) on the {ctx.split_name} split: rows are true classes, columns predicted ones (counts, shaded by row share)."
    )
    return View(plotting.confusion_matrix(result.confusion.numpy(), names, title=title), caption, result)
