"""The audit's configuration: one frozen dataclass whose field defaults are the only place a default is
written. The CLI builds its options from these fields, and the library validates them here, in the main
process, before any data is loaded or any model trained.

Light on purpose (stdlib only): `dpaudit --help` imports this module, and must not pay for numpy or torch.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dpaudit.config.recipes import DP_RECIPE, NON_DP_RECIPE
from dpaudit.errors import DPAuditError

# Closed sets owned here (the CLI's choices read them); open sets are registries in their own modules.
ACCOUNTANTS = ("prv", "rdp")
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ghost", "fast")
DEVICES = ("cpu", "cuda", "auto")
SHADOW_CLASSIFIERS = ("gbm", "logreg", "mlp")
DEFAULT_ATTACKS = ("loss", "shadow", "rmia", "rmia-online", "lira")
BUILTIN_DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
BUILTIN_MODELS = ("simple-cnn", "tanh-cnn", "mlp")
# Settings a built-in dataset needs where the defaults below do not fit it, applied where the user set nothing
# (the CLI's options left at their defaults, the API's keywords not passed). The breast-cancer records are 569:
# 169 test records and a pool of 400 (200 members, 200 non-members) use all of them; batches of 64 because the
# recipes' 128 / 256 would be most or all of the 200 members. Nothing else is tuned: the recipes are the image
# ones (checked on a seed-123 split, which no default audit reports on: test accuracy 0.98 / 0.97 / 0.83 at
# ε = ∞ / 8 / 1).
DATASET_SETTINGS = {
    "sklearn-breast-cancer": {"members": 200, "n_test": 169, "batch_size": 64},
}
# Largest epsilon an accountant is asked to calibrate: PRV's numerics slow to minutes far above this, and a
# claim of e^1000 bounds nothing a membership test could measure.
MAX_EPSILON = 100.0


@dataclass(frozen=True)
class AuditConfig:
    """Every field has a default; the defaults are the reference audit on the embedded digits.

    The ``help`` metadata of each field is the CLI's help text for its option (one source)."""

    dataset: str = "mnist-5k"
    data_dir: str | None = None
    download: bool = False
    members: int = 1750
    n_test: int = 1000
    epsilons: tuple[float, ...] = (math.inf, 8.0, 1.0)
    delta: float = 1e-5
    # None: the data's default, simple-cnn for images and mlp for feature vectors (resolved once the data is
    # loaded: see ``for_data``).
    model: str | None = None
    hidden: tuple[int, ...] | None = None  # the mlp's hidden widths; None: dpaudit.training.models.DEFAULT_HIDDEN
    label_column: str | None = None  # csv:PATH only: the column of classes
    categorical: tuple[str, ...] = ()  # csv:PATH only: columns one-hot encoded even if they hold numbers
    # None takes the recipe for the model's kind (NON_DP_RECIPE / DP_RECIPE); a value applies to both.
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "hooks"
    shadow_models: int = 4
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    shadow_classifier: str = "gbm"
    shadow_per_class: bool = False
    canaries: int = 0
    # White-box gradient canaries per DP target, on by default: DP verdicts rest on measured power (dpaudit.core.power)
    # rather than on attacks that rarely decide; 0 turns them off. Audits of targets dpaudit did not train
    # (--target, --from-signals) cannot have them and run without.
    gradient_canaries: int = 1000
    confidence: float = 0.95
    n_boot: int = 1000
    seed: int = 0
    jobs: int = 0  # 0: as many worker processes as cores allow
    device: str = "cpu"
    cache_dir: str | None = None
    executor: str = "local"

    def recipe(self, epsilon: float) -> dict:
        base = DP_RECIPE if math.isfinite(epsilon) else NON_DP_RECIPE
        given = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "momentum": self.momentum}
        return {k: (given[k] if given[k] is not None else v) for k, v in base.items()}

    def check_delta(self) -> None:
        """δ against the training-set size; run once the data is known to hold ``members`` records, so that a
        --members beyond the data is blamed on --members, not on δ."""
        # The target trains on its members plus the canaries drawn in, at most all of them.
        n_max = self.members + self.canaries + self.gradient_canaries
        if any(math.isfinite(e) for e in self.epsilons) and self.delta >= 1.0 / n_max:
            raise DPAuditError(f"--delta {self.delta:g} is not below 1/N = {1.0 / n_max:.3g} "
                               f"for up to N = {n_max} training records (members + canaries + gradient canaries); "
                               f"choose --delta < 1/N")

    def for_data(self, input_shape: tuple[int, ...]) -> AuditConfig:
        """This configuration with the model named: None becomes simple-cnn for images (C, H, W), mlp for
        feature vectors (F,)."""
        from dataclasses import replace

        if self.model is not None:
            return self
        return replace(self, model="simple-cnn" if len(tuple(input_shape)) == 3 else "mlp")

    def architecture(self) -> str:
        """The model spec that builds each model: ``model``, or ``mlp-W1-W2...`` with ``--hidden`` widths."""
        model = self.model if self.model is not None else "simple-cnn"
        if self.hidden is None:
            return model
        return "mlp-" + ("-".join(str(w) for w in self.hidden) if self.hidden else "0")


    def to_dict(self) -> dict:
        d = asdict(self)
        d["epsilons"] = [("inf" if not math.isfinite(e) else e) for e in self.epsilons]
        d["attacks"] = list(self.attacks)
        d["categorical"] = list(self.categorical)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        d["recipes"] = {"non_dp": self.recipe(math.inf), "dp": self.recipe(1.0)}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AuditConfig:
        """Rebuild the configuration a report recorded (its ``config`` block)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names - {"recipes"}
        if unknown:
            raise DPAuditError(f"report config has unknown fields {sorted(unknown)}; written by another version?")
        kw = {k: v for k, v in d.items() if k in names}
        kw["epsilons"] = tuple(float(e) for e in kw.get("epsilons", ()))
        kw["attacks"] = tuple(kw.get("attacks", ()))
        kw["categorical"] = tuple(kw.get("categorical", ()))
        if kw.get("hidden") is not None:
            kw["hidden"] = tuple(kw["hidden"])
        return cls(**kw)

    def validate(self, training: bool = True) -> None:
        """Every check that needs no data, phrased in terms of the option the user passed. ``training`` False
        (an audit of outputs only) skips the checks of the training recipe."""
        _check_int("--seed", self.seed, 0, 2**32 - 1)
        self.check_tabular_options()
        # Fewer members than this cannot give a bound worth a verdict (a perfect attack on 10 + 10 records
        # proves at most eps ~ 1.3 at 95%).
        _check_int("--members", self.members, 10)
        _check_int("--n-test", self.n_test, 1)
        _check_int("--shadow-models", self.shadow_models, 0)
        _check_int("--canaries", self.canaries, 0)
        if self.canaries == 1:  # the one-run test guesses one "in" and one "out": it needs two
            raise DPAuditError("--canaries must be 0 (off) or at least 2, got 1")
        _check_int("--gradient-canaries", self.gradient_canaries, 0, 1_000_000)
        _check_int("--bootstrap", self.n_boot, 100)
        _check_int("--jobs", self.jobs, 0)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) is not None:
                _check_int(f"--{name.replace('_', '-')}", getattr(self, name), 1)
        for name in ("lr", "max_grad_norm"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise DPAuditError(f"--{name.replace('_', '-')} must be a finite number > 0, got {v}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise DPAuditError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not self.epsilons:
            raise DPAuditError("--epsilons is empty; give a comma list such as inf,8,1")
        for e in self.epsilons:
            check_epsilon(e)
        names = [model_name(e) for e in self.epsilons]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DPAuditError(f"--epsilons names {', '.join(dup)} twice; give each epsilon once")
        if not 0 < self.delta < 1:
            raise DPAuditError(f"--delta must be in (0, 1), got {self.delta}")
        for e in self.epsilons if training else ():
            batch = self.recipe(e)["batch_size"]
            if batch > self.members:
                given = "--batch-size" if self.batch_size is not None else \
                    f"the {'DP' if math.isfinite(e) else 'non-DP'} recipe's batch size (set --batch-size)"
                raise DPAuditError(f"{given} {batch} is larger than the {self.members} training records of each "
                                   f"model (--members); lower it or raise --members")
        if not self.attacks:
            raise DPAuditError("--attacks is empty: an audit without an attack has no evidence; "
                               f"give a comma list such as {','.join(DEFAULT_ATTACKS)}")
        if len(set(self.attacks)) != len(self.attacks):
            raise DPAuditError(f"--attacks lists an attack twice: {','.join(self.attacks)}")
        if self.shadow_models < 1:
            raise DPAuditError("--shadow-models must be at least 1 (thresholds come from reference models)")
        if not 0.5 <= self.confidence < 1:
            raise DPAuditError(f"--confidence must be in [0.5, 1), got {self.confidence}")
        for name, value, allowed in (("--accountant", self.accountant, ACCOUNTANTS),
                                     ("--grad-sample-mode", self.grad_sample_mode, GRAD_SAMPLE_MODES),
                                     ("--device", self.device, DEVICES),
                                     ("--shadow-classifier", self.shadow_classifier, SHADOW_CLASSIFIERS)):
            if value not in allowed:
                raise DPAuditError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.cache_dir is not None:
            check_writable_dir(Path(self.cache_dir), "--cache-dir")

    def check_tabular_options(self) -> None:
        """--label-column / --categorical with csv:PATH only (and csv:PATH needs the first); --hidden with mlp."""
        csv = str(self.dataset).startswith("csv:")
        if csv and self.label_column is None:
            raise DPAuditError(f"--dataset {self.dataset} needs --label-column NAME, the column that holds the classes")
        if not csv and (self.label_column is not None or self.categorical):
            opt = "--label-column" if self.label_column is not None else "--categorical"
            raise DPAuditError(f"{opt} names a column of a CSV file; it goes with --dataset csv:PATH, not "
                               f"{self.dataset}")
        if self.hidden is not None:
            if self.model not in (None, "mlp"):
                raise DPAuditError(f"--hidden sets the widths of the built-in mlp; it does not go with --model "
                                   f"{self.model} (drop one of them)")
            if len(self.hidden) > 8:
                raise DPAuditError(f"--hidden takes up to 8 widths, got {len(self.hidden)}")
            for w in self.hidden:
                _check_int("--hidden", w, 1, 65536)


def _check_int(option: str, value, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DPAuditError(f"{option} must be a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        where = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise DPAuditError(f"{option} must be {where}, got {value}")


def check_epsilon(e: float, option: str = "--epsilons") -> None:
    if math.isnan(e) or not e > 0:
        raise DPAuditError(f"{option}: epsilon must be > 0 (inf means no DP), got {e}")
    if math.isfinite(e) and e > MAX_EPSILON:
        raise DPAuditError(f"{option}: epsilon {e:g} is above {MAX_EPSILON:g}, where no audit could measure it and "
                           f"calibrating the noise takes minutes; use inf for no DP, or a smaller epsilon")
    if math.isfinite(e) and e < 1e-3:
        raise DPAuditError(f"{option}: epsilon {e:g} is below 0.001; the noise it needs would drown any training")


def check_writable_dir(path: Path, option: str) -> None:
    """A folder we can create files in, or can create: checked before hours of training, not after."""
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise DPAuditError(f"{option} {path} is a dangling symbolic link; remove it or choose another folder")
        probe = probe.parent
    if not probe.is_dir():
        raise DPAuditError(f"{option} {path}: {probe} is a file, not a folder; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DPAuditError(f"{option} {path}: {probe} is not writable; choose a folder you can write to")


def model_name(epsilon: float) -> str:
    return "non-dp" if not math.isfinite(epsilon) else f"dp-eps{epsilon:g}"


NO_DP_WORDS = ("inf", "none", "nodp", "non-dp")


def parse_epsilons(value: str, option: str = "--epsilons") -> tuple[float, ...]:
    out = []
    for part in value.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            e = math.inf if part in NO_DP_WORDS else float(part)
        except ValueError:
            raise DPAuditError(f"{option}: {part!r} is not a number; give a comma list such as inf,8,1") from None
        if math.isinf(e) and part not in NO_DP_WORDS:
            # float("1e400") is inf: a typo must not silently switch DP off
            raise DPAuditError(f"{option}: {part} overflows to infinity; write inf to train without DP")
        check_epsilon(e, option)
        out.append(e)
    if not out:
        raise DPAuditError(f"{option} is empty; give a comma list such as inf,8,1")
    return tuple(out)


def parse_list(value: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in value.split(",") if a.strip())


def parse_hidden(value: str, option: str = "--hidden") -> tuple[int, ...]:
    """``64,64`` -> (64, 64); ``0`` or ``none`` -> () (no hidden layer: a linear model)."""
    text = value.strip().lower()
    if text in ("0", "none"):
        return ()
    out = []
    for part in parse_list(text):
        try:
            out.append(int(part))
        except ValueError:
            raise DPAuditError(f"{option}: {part!r} is not a whole number; give widths such as 64,64") from None
    if not out:
        raise DPAuditError(f"{option} is empty; give widths such as 64,64 (or 0 for no hidden layer)")
    return tuple(out)


def apply_dataset_settings(dataset: str, given: dict, unset: set[str]) -> dict:
    """``given`` with the settings ``DATASET_SETTINGS`` holds for ``dataset`` put in for the keys in ``unset``
    (those the user did not set)."""
    out = dict(given)
    for k, v in DATASET_SETTINGS.get(str(dataset), {}).items():
        if k in unset:
            out[k] = v
    return out
