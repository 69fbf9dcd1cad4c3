"""`dpaudit attack`: re-run attacks on a past audit's cached models, spending only the α that is left."""
from __future__ import annotations

from pathlib import Path

import click

from dpaudit.cli.common import (
    DEFAULTS,
    command_line,
    friendly,
    given,
    main,
    note_dropped,
)
from dpaudit.config import (
    SHADOW_CLASSIFIERS,
    AuditConfig,
    parse_list,
)
from dpaudit.errors import DPAuditError


@main.command()
@click.argument("report_path", type=click.Path(path_type=Path))
@click.option("--cache-dir", type=click.Path(path_type=Path), required=True,
              help="The model cache the audit was run with (`dpaudit audit --cache-dir DIR`).")
@click.option("--attacks", "attack_list", default=",".join(DEFAULTS["attacks"]), show_default=True,
              help="Comma list of registered attacks to run (see `dpaudit audit --help`).")
@click.option("--shadow-classifier", type=click.Choice(SHADOW_CLASSIFIERS), default=None,
              help="Shadow attack classifier. Default: the one the audit used.")
@click.option("--shadow-per-class/--shadow-global", default=None,
              help="One shadow classifier per class, or one for all. Default: as the audit.")
@click.option("--model", default=None,
              help="Your factory (package.module:function or file.py:function), when the audit used one: required "
              "then, since a factory named in the report is never imported. Default: the report's built-in model.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder for the new report.")
@click.option("--force", is_flag=True, default=False, help="Replace an --out folder that already holds files.")
@click.option("--quiet", is_flag=True, default=False, help="No progress bars.")
@friendly
def attack(report_path, cache_dir, attack_list, shadow_classifier, shadow_per_class, model, out, force, quiet):
    """Re-run attacks against the saved target and reference models of a past audit (no training)."""
    from dataclasses import replace

    from dpaudit.config import check_writable_dir
    from dpaudit.io import check_out_folder
    from dpaudit.io_paths import check_out_paths
    from dpaudit.pipeline import audit_report
    from dpaudit.report import load_report, render, text_summary, write_outputs
    from dpaudit.training.models import is_builtin_model

    check_out_paths(out, [("report", report_path), ("--cache-dir", cache_dir)], cache_dir=cache_dir, force=force)
    check_writable_dir(Path(out), "--out")
    check_out_folder(out, force)
    old = load_report(report_path)
    cfg = AuditConfig.from_dict(old.to_json()["config"])
    # Code is never imported because a file names it: a user factory comes from the command line only.
    if model is None and cfg.model is not None and not is_builtin_model(cfg.model):
        raise DPAuditError(f"{report_path} names the model factory {cfg.model[:80]!r}, which is not a built-in "
                           f"model; pass --model with your factory (dpaudit never imports code named in a file)")
    changes = {"cache_dir": str(cache_dir), "attacks": parse_list(attack_list)}
    if model is not None:
        changes["model"] = model
    if shadow_classifier is not None:
        changes["shadow_classifier"] = shadow_classifier
    if shadow_per_class is not None:
        changes["shadow_per_class"] = shadow_per_class
    cfg = replace(cfg, **changes)
    if not given("attack_list"):  # the default list leaves out what the audit's references cannot serve
        from dpaudit.core.attack_registry import usable_attacks

        kept, dropped = usable_attacks(cfg.attacks, cfg.shadow_models)
        cfg = replace(cfg, attacks=kept)
        note_dropped(dropped)
    # α-spending fixed in advance (bounds.alpha_share): re-run r spends α/2^(r+1) of the audit's budget, so the
    # verdicts of the audit and of any number of re-runs on its models hold together at its --confidence. A
    # report written before the schedule spent all of α itself: the combined confidence then says so.
    from dpaudit.pipeline import ledger_key, ledger_runs, record_run

    spend = old.alpha_spending
    if spend is not None:
        rerun, before = spend.rerun + 1, spend.alpha_spent_total
    else:
        rerun, before = 1, 1.0 - cfg.confidence
    # the cache's ledger knows every run on these models, also those started from an older report
    key = ledger_key(old)
    runs = ledger_runs(cache_dir, key)
    if runs:
        last = max(runs, key=lambda r: int(r.get("rerun", 0)))
        if int(last.get("rerun", 0)) + 1 > rerun:
            rerun, before = int(last["rerun"]) + 1, float(last["alpha_spent_total"])
    rep, _ = audit_report(cfg, progress=not quiet, command=command_line(), require_cached=True, rerun=rerun,
                          spent_before=before)
    rep = replace(rep, family_correction=f"{rep.family_correction}. This report re-runs attacks on the models of "
                                         f"{report_path} (run {rerun} on them).")
    record_run(cache_dir, key, rep.alpha_spending, str(out))
    files = {}
    for f in ("json", "md", "html"):
        files.update(render(rep, f))
    write_outputs(out, files, force=force)
    click.echo(text_summary(rep))
    click.echo(f"\nwrote {', '.join(sorted(files))} in {out}")
