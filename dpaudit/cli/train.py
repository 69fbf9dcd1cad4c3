"""`dpaudit train` (one model, saved) and `dpaudit inspect` (what a saved model is)."""
from __future__ import annotations

from pathlib import Path

import click

from dpaudit.cli.common import (
    DEFAULTS,
    common_training_options,
    friendly,
    main,
    make_config,
    print_record,
)
from dpaudit.config import (
    DEVICES,
    parse_epsilons,
)
from dpaudit.errors import DPAuditError


@main.command()
@common_training_options
@click.option("--epsilon", type=str, default="8", show_default=True,
              help="Target ε for this one model; inf trains without DP.")
@click.option("--n-test", type=int, default=DEFAULTS["n_test"], show_default=True, help="Held-out test records (records).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder: model.pt (weights only) and model.pt.json (training record).")
@click.option("--force", is_flag=True, default=False, help="Replace a model already in --out. Default: refuse.")
@friendly
def train(epsilon, out, force, **kw):
    """Train and save one model, with DP (Opacus) or without, on the target's members."""
    from dpaudit.training.jobs import train_and_save

    cfg = make_config(epsilons=parse_epsilons(epsilon), shadow_models=1, gradient_canaries=0, **kw)
    from dpaudit.io_paths import check_out_paths, dataset_path

    check_out_paths(out, [("--data-dir", cfg.data_dir), ("--dataset", dataset_path(cfg.dataset))])
    record = train_and_save(cfg, Path(out), force=force)
    print_record(record)
    click.echo(f"saved {Path(out) / 'model.pt'}")


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(DEVICES), default=DEFAULTS["device"], show_default=True,
              help="Where to evaluate the model.")
@click.option("--model", default=None,
              help="Your factory (package.module:function or file.py:function) for a model trained with one. "
              "Default: the built-in architecture the record names (a factory named in a file is never imported).")
@friendly
def inspect(model_path, device, model):
    """Load a saved model (weights only, never code) and print its training record and test accuracy."""
    import numpy as np

    from dpaudit.training.data import load_dataset
    from dpaudit.training.inference import model_logits
    from dpaudit.training.train import load_model

    path = model_path / "model.pt" if model_path.is_dir() else model_path
    module, meta = load_model(path, device=device, model=model)
    click.echo(f"{path}: {meta['config'].get('model')}")
    print_record(meta["record"])
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
