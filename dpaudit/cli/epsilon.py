"""`dpaudit epsilon`: an ε lower bound from anyone's per-record scores (CSV)."""
from __future__ import annotations

from pathlib import Path

import click

from dpaudit.cli.common import (
    friendly,
    main,
)


@main.command()
@click.argument("scores_csv", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["one-run", "clopper-pearson"]), default="clopper-pearson",
              show_default=True, help="one-run: Steinke-Nasr-Jagielski canary test (top-k guesses); "
              "clopper-pearson: a threshold's TPR/FPR with exact binomial intervals.")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="The δ of the (ε, δ) claim tested.")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Confidence of the lower bound.")
@click.option("--threshold", type=float, default=None,
              help="Fixed threshold: score >= T guesses member. Default: chosen with a Bonferroni correction.")
@click.option("--guesses", type=int, default=None,
              help="Fixed number k of top-scored records guessed member. Default: chosen with a Bonferroni correction.")
@friendly
def epsilon(scores_csv, method, delta, confidence, threshold, guesses):
    """Empirical ε lower bound from any model's per-record scores (CSV: is_member,score)."""
    from dpaudit.core.scores import epsilon_from_scores, read_scores_csv
    from dpaudit.io import dumps

    is_member, scores = read_scores_csv(scores_csv)
    click.echo(dumps(epsilon_from_scores(is_member, scores, method=method, delta=delta, confidence=confidence,
                                         threshold=threshold, guesses=guesses)))
