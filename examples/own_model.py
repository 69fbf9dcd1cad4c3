"""Audit your own model on your own data: a small user-defined network on scikit-learn's 8x8 digits.

The data: scikit-learn's bundled digits (1,797 grey 8x8 images, 10 classes, no download), which dpaudit
knows as ``sklearn-digits``. ``export_npz`` writes the same records as an ``.npz`` archive, the form in which
you would bring your own data (``--dataset npz:PATH``: arrays ``x`` [N,H,W] / [N,H,W,C] / [N,C,H,W] and ``y``).

The model: ``make_net`` below, a factory ``make_net(input_shape, n_classes) -> nn.Module``. dpaudit builds it
from the spec string ``MODEL_SPEC`` (``examples/own_model.py:make_net``: a file path, so it works from a fresh
clone's root without installing anything; the dotted ``examples.own_model:make_net`` would collide with the
top-level ``examples`` package that Opacus installs). It uses GroupNorm and tanh, both of which Opacus trains
with DP-SGD; a BatchNorm layer would be refused before any training, with the layer named.

``python examples/own_model.py OUT`` audits the network with and without DP (about a minute on 2 cores), writes
the report to ``OUT/own``, exports the same audit's model outputs, and audits those again from the outputs
alone (``OUT/from-signals``), as a team whose model is not PyTorch would. ``--check`` only checks the model
and the data (no training).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch import nn

MODEL_SPEC = "examples/own_model.py:make_net"  # relative to the repository root, for the command line
MODEL_SPEC_HERE = f"{Path(__file__).resolve()}:make_net"  # the same factory from any working folder
DATASET = "sklearn-digits"


def make_net(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Two 3x3 convolutions, GroupNorm and tanh (bounded activations suit DP-SGD's clipping), then a
    linear head. ~11k parameters on 1x8x8: small enough to train many reference models in seconds."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.Tanh(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * (h // 2) * (w // 2), 32),
        nn.Tanh(),
        nn.Linear(32, n_classes),
    )


def load_data():
    """The digits as a dpaudit Dataset: uint8 [1797, 1, 8, 8], per-channel normalisation from the data."""
    from dpaudit.training.data import load_dataset

    return load_dataset(DATASET)


def export_npz(path: str | Path) -> Path:
    """The same records as an npz archive: ``load_dataset(f"npz:{path}")`` then audits the same data."""
    ds = load_data()
    path = Path(path)
    np.savez_compressed(path, x=ds.images[:, 0], y=ds.labels)  # [N,H,W] grey
    return path


def build(dp: bool = True):
    """The model dpaudit would train, checked as it would check it (output shape; Opacus when ``dp``)."""
    from dpaudit.training.models import build_model

    ds = load_data()
    return build_model(MODEL_SPEC_HERE, ds.input_shape, ds.n_classes, validate_dp=dp), ds


def run(out: str | Path, seed: int = 0) -> tuple:
    """The audit, with and without DP, then the same from its outputs only. Returns the two typed reports."""
    import math

    import dpaudit
    from dpaudit.config import AuditConfig
    from dpaudit.pipeline import audit_signals, run_audit
    from dpaudit.schema import Report
    from dpaudit.sources.external import signals_npz

    out = Path(out)
    # Small on purpose: 400 members of 1,797 records, 3 reference models, batches of 64 for this small set.
    cfg = AuditConfig(dataset=DATASET, model=MODEL_SPEC_HERE, members=400, n_test=300, epsilons=(math.inf, 4.0),
                      delta=1e-4, epochs=15, batch_size=64, lr=0.1, shadow_models=3, n_boot=300, seed=seed,
                      attacks=("loss", "rmia", "lira"))
    doc, extras = run_audit(cfg, progress=False, command="python examples/own_model.py")
    own = Report.from_json(doc)
    dpaudit.write_report(own, out / "own", force=True)
    dp = own.models[1]
    signals = out / "own-signals.npz"
    signals.write_bytes(signals_npz(extras["signals"][dp.name]))
    doc2, _ = audit_signals(signals, cfg, dp.training.epsilon, command="python examples/own_model.py")
    from_outputs = Report.from_json(doc2)
    dpaudit.write_report(from_outputs, out / "from-signals", force=True)
    return own, from_outputs


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] != "--check":
        own, outputs = run(sys.argv[1])
        for m in own.models:
            print(f"{m.name}: test accuracy {m.training.test_accuracy:.3f}; {m.verdict.text}")
        print(f"from outputs only: {outputs.models[0].verdict.text}")
        print(f"wrote {sys.argv[1]}/own and {sys.argv[1]}/from-signals")
        return 0
    model, ds = build(dp=True)
    n_params = sum(p.numel() for p in model.parameters())
    logits = model.eval()(ds.to_tensor(ds.images[:4]))
    print(f"{DATASET}: {len(ds)} records of shape {ds.input_shape}, {ds.n_classes} classes; "
          f"normalisation mean {ds.normalisation.mean[0]:.4f} std {ds.normalisation.std[0]:.4f} (from the data)")
    print(f"{MODEL_SPEC}: {n_params:,} parameters, logits {list(logits.shape)}, accepted by Opacus for DP-SGD")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a fresh clone
    sys.exit(main())
