"""`dpaudit report` (re-render a saved report) and `dpaudit whitebox` (analyse saved gradient-canary observations)."""
from __future__ import annotations

from pathlib import Path

import click

from dpaudit.cli.common import (
    check_other_audit,
    command_line,
    friendly,
    main,
)
from dpaudit.config import (
    parse_list,
)
from dpaudit.errors import DPAuditError


@main.command()
@click.argument("report_path", type=click.Path(path_type=Path))
@click.option("--format", "fmt_name", type=click.Choice(["md", "html", "json"]), default="md", show_default=True,
              help="Format to render.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder. Default: the report's own folder.")
@friendly
def report(report_path, fmt_name, out):
    """Re-render a saved report.json (and its figures) without re-running anything."""
    from dpaudit.config import check_writable_dir
    from dpaudit.report import load_report, render, write_outputs

    rep = load_report(report_path)
    if out is not None:
        check_writable_dir(Path(out), "--out")
        check_other_audit(Path(out), report_path)
    files = render(rep, fmt_name)
    write_outputs(out or report_path.parent, files, replace=False)
    click.echo(f"wrote {', '.join(files)} in {out or report_path.parent}")


@main.command()
@click.argument("obs_path", metavar="OBS", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder. Default: the observations' own folder (its report files are replaced).")
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Confidence of the verdict (its three white-box routes share α by Bonferroni).")
@click.option("--format", "formats", default="json,md,html", show_default=True,
              help="Comma list of report formats to write (json is always written).")
@friendly
def whitebox(obs_path, out, confidence, formats):
    """(Re)analyse saved gradient-canary observations (a WhiteBoxProbe's observations.npz, or a cached
    model's .whitebox.npz) into a white-box report, without training."""
    from dpaudit.report import render, text_summary, write_outputs
    from dpaudit.sources.probe import load_observations, report_from_observations

    fmts = list(parse_list(formats))
    bad = set(fmts) - {"json", "md", "html"}
    if bad:
        raise DPAuditError(f"--format: unknown {sorted(bad)}; choose from json, md, html")
    obs, meta = load_observations(obs_path)
    doc = report_from_observations(obs, meta=meta, confidence=confidence, command=command_line())
    files: dict[str, bytes] = {}
    for f in ["json"] + [f for f in fmts if f != "json"]:
        files.update(render(doc, f))
    target = out or obs_path.parent
    write_outputs(target, files, replace=False)
    click.echo(text_summary(doc))
    click.echo(f"\nwrote {', '.join(sorted(n for n in files if '/' not in n))} in {target}")
