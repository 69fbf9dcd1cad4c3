"""`dpaudit audit`: train and audit, audit a --target, or audit outputs only (--from-signals)."""
from __future__ import annotations

from pathlib import Path

import click

from dpaudit.cli.common import (
    DEFAULTS,
    command_line,
    common_training_options,
    friendly,
    given,
    main,
    make_config,
    note_dropped,
)
from dpaudit.config import (
    SHADOW_CLASSIFIERS,
    parse_epsilons,
    parse_list,
)
from dpaudit.errors import DPAuditError


@main.command()
@common_training_options
@click.option("--epsilons", default=",".join("inf" if e == float("inf") else f"{e:g}" for e in DEFAULTS["epsilons"]),
              show_default=True, help="Comma list of target ε, one target model each; inf means no DP.")
@click.option("--shadow-models", type=int, default=DEFAULTS["shadow_models"], show_default=True,
              help="Reference (shadow) models K per ε, trained with the target's recipe on random halves of the pool.")
@click.option("--attacks", default=",".join(DEFAULTS["attacks"]), show_default=True,
              help="Comma list of registered attacks: loss (Yeom et al. 2018), shadow (Shokri et al. 2017), "
              "rmia (Zarifzadeh et al. 2024), lira (Carlini et al. 2022).")
@click.option("--shadow-classifier", type=click.Choice(SHADOW_CLASSIFIERS), default=DEFAULTS["shadow_classifier"],
              show_default=True, help="The shadow attack's classifier: gradient boosting, logistic regression or an MLP.")
@click.option("--shadow-per-class/--shadow-global", default=DEFAULTS["shadow_per_class"], show_default=True,
              help="One attack classifier per class (as Shokri et al.) or one for all.")
@click.option("--canaries", type=int, default=DEFAULTS["canaries"], show_default=True,
              help="Canary records m for the one-run audit (0 = off); each enters the target with probability "
              "1/2. 500 fits the embedded data.")
@click.option("--gradient-canaries", type=int, default=DEFAULTS["gradient_canaries"], show_default=True,
              help="White-box gradient canaries M per DP target (0 = off): each enters with "
              "probability 1/2, is Poisson-sampled like a record, and its clipped, noised gradient is observed at "
              "every step, to test the training against its accounting (σ, q, clipping, steps).")
@click.option("--confidence", type=float, default=DEFAULTS["confidence"], show_default=True,
              help="Confidence level at which all of the report's verdicts hold together, in [0.5, 1).")
@click.option("--bootstrap", "n_boot", type=int, default=DEFAULTS["n_boot"], show_default=True,
              help="Bootstrap resamples for AUC / advantage intervals (at least 100).")
@click.option("--n-test", type=int, default=DEFAULTS["n_test"], show_default=True, help="Held-out test records (records).")
@click.option("--jobs", type=int, default=DEFAULTS["jobs"], show_default=True,
              help="Worker processes training models in parallel (0 = one per core).")
@click.option("--executor", default=DEFAULTS["executor"], show_default=True,
              help="Where training jobs run: local (worker processes here) or ray (a Ray cluster; pip install "
              "'dpaudit[ray]').")
@click.option("--ray-address", default=None,
              help="With --executor ray: the cluster's address (host:port). Default: $RAY_ADDRESS, else a local Ray "
              "started for this run.")
@click.option("--target", "target_path", type=click.Path(path_type=Path), default=None,
              help="Audit your own trained target: a state dict saved with torch.save(model.state_dict(), PATH), "
              "loaded weights-only. Needs --target-members and --model. dpaudit trains only the reference models. "
              "Default: dpaudit trains the targets.")
@click.option("--target-members", type=click.Path(path_type=Path), default=None,
              help="With --target: the dataset records the target trained on, as indices (one per line, or a 1-D "
              "integer .npy).")
@click.option("--target-epsilon", type=str, default=None,
              help="With --target or --from-signals: the ε the target claims, with --delta as its δ. Default: inf, "
              "no DP claim.")
@click.option("--from-signals", "signals_path", type=click.Path(path_type=Path), default=None,
              help="Build the report from a SIGNALS.npz of model outputs only, with no training (models that are "
              "not PyTorch; see README 'Audit your own model'). Default: off.")
@click.option("--save-signals/--no-save-signals", default=False, show_default=True,
              help="Also write signals/<model>.npz: every model's outputs in --from-signals form.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=DEFAULTS["cache_dir"],
              help="Reuse models trained with the same full configuration (keyed by its hash); an interrupted "
              "audit resumes from what finished. Default: off.")
@click.option("--save-scores/--no-save-scores", default=False, show_default=True,
              help="Also write scores/<model>__<attack>.csv: record_index,is_member,score.")
@click.option("--format", "formats", default="json,md,html", show_default=True,
              help="Comma list of report formats to write (json is always written).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/audit"), show_default=True,
              help="Output folder; written atomically (files appear only when complete).")
@click.option("--force", is_flag=True, default=False,
              help="Replace an --out folder that already holds files, as a whole. Default: refuse, before any work.")
@click.option("--quiet", is_flag=True, default=False, help="No progress bars.")
@friendly
def audit(save_scores, save_signals, formats, out, force, quiet, ray_address, target_path, target_members,
          target_epsilon, signals_path, **kw):
    """Train non-DP and DP targets with reference models, attack them all, and write the report."""
    from dpaudit.config import check_writable_dir
    from dpaudit.io import check_out_folder
    from dpaudit.pipeline import Target, audit_report
    from dpaudit.report import render, scores_csv, text_summary, write_outputs
    from dpaudit.sources.external import signals_npz

    fmts = list(parse_list(formats))
    bad = set(fmts) - {"json", "md", "html"}
    if bad:
        raise DPAuditError(f"--format: unknown {sorted(bad)}; choose from json, md, html")
    if (target_path is not None or signals_path is not None) and given("epsilons"):
        raise DPAuditError("--epsilons sets the ε of the targets dpaudit trains; with --target or --from-signals "
                           "give the model's claim as --target-epsilon instead")
    if signals_path is not None:
        for opt, why in (("shadow_models", "the references are the signals file's rows 1.."),
                         ("canaries", "canaries are the file's canary_scores/canary_in")):
            if given(opt):
                raise DPAuditError(f"--{opt.replace('_', '-')} does nothing with --from-signals ({why}); drop it")
    default_attacks = not given("attacks")
    cfg = make_config(**kw)
    from dpaudit.io_paths import check_out_paths, dataset_path

    check_out_paths(out, [("--cache-dir", cfg.cache_dir), ("--target", target_path),
                          ("--target-members", target_members), ("--from-signals", signals_path),
                          ("--data-dir", cfg.data_dir), ("--dataset", dataset_path(cfg.dataset))],
                    cache_dir=kw.get("cache_dir"), force=force)
    check_writable_dir(Path(out), "--out")
    check_out_folder(out, force)
    if target_epsilon is not None and target_path is None and signals_path is None:
        raise DPAuditError("--target-epsilon is the claim of a --target or --from-signals model; drop it, or give "
                           "one of those")
    if ray_address is not None and cfg.executor != "ray":
        raise DPAuditError("--ray-address goes with --executor ray")
    claimed = parse_epsilons(target_epsilon or "inf", option="--target-epsilon")
    if len(claimed) != 1:
        raise DPAuditError("--target-epsilon takes one ε (inf for no DP claim)")
    claimed = claimed[0]
    explicit_gc = click.get_current_context().get_parameter_source("gradient_canaries") not in (
        click.core.ParameterSource.DEFAULT, None)
    if explicit_gc and cfg.gradient_canaries and not any(e != float("inf") for e in cfg.epsilons) \
            and signals_path is None and target_path is None:
        raise DPAuditError("--gradient-canaries audit DP-SGD: give at least one finite epsilon, or drop them")
    if explicit_gc and cfg.gradient_canaries and (target_path is not None or signals_path is not None):
        raise DPAuditError("--gradient-canaries need dpaudit to train the target; drop them with --target or "
                           "--from-signals (the default runs them only where dpaudit trains)")
    if (target_path is None) != (target_members is None):
        raise DPAuditError("--target and --target-members go together: the weights and the records they trained on")
    if signals_path is not None:
        if target_path is not None:
            raise DPAuditError("give --target or --from-signals, not both")
        from dpaudit.pipeline import signals_report

        cfg.validate(training=False)
        report, extras = signals_report(signals_path, cfg, claimed, command=command_line(),
                                        drop_unusable=default_attacks)
        note_dropped(extras.get("dropped_attacks", []))
    else:
        from dataclasses import replace

        from dpaudit.core.attack_registry import usable_attacks
        from dpaudit.limits import check_gradient_canary_memory
        from dpaudit.pipeline import default_workers
        from dpaudit.training.executors import get_executor

        if default_attacks:  # a list the user wrote is refused instead (check_attacks)
            cfg.validate()  # --shadow-models and the rest first: their own message, not a dropped list
            kept, dropped = usable_attacks(cfg.attacks, cfg.shadow_models)
            cfg = replace(cfg, attacks=kept)
            note_dropped(dropped)
        check_gradient_canary_memory(cfg)

        executor = get_executor(cfg.executor, workers=default_workers(cfg), device=cfg.device,
                                **({"address": ray_address} if ray_address else {}))
        target = Target(str(target_path), str(target_members), claimed) if target_path is not None else None
        report, extras = audit_report(cfg, progress=not quiet, command=command_line(), target=target,
                                      executor=executor)
    files: dict[str, bytes] = {}
    for f in ["json"] + [f for f in fmts if f != "json"]:
        files.update(render(report, f))
    if save_scores:
        for (name, attack), (idx, truth, scores) in extras["scores"].items():
            files[f"scores/{name}__{attack}.csv"] = scores_csv(idx, truth, scores)
    if save_signals:
        for name, arrays in extras.get("signals", {}).items():
            files[f"signals/{name}.npz"] = signals_npz(arrays)
    write_outputs(out, files, force=force)
    if cfg.cache_dir and signals_path is None:
        from dpaudit.pipeline import ledger_key, record_run

        record_run(cfg.cache_dir, ledger_key(report), report.alpha_spending, str(out))
    click.echo(text_summary(report))
    click.echo(f"\nwrote {', '.join(sorted(n for n in files if '/' not in n))} in {out}")
