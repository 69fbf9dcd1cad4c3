"""The report as typed, frozen dataclasses, and the one place where its JSON is spelled.

:meth:`Report.to_json` and :meth:`Report.from_json` are the only code that knows the JSON keys, the schema
version and how non-finite numbers are written (``inf`` as the string ``"inf"``, NaN as ``null``, via
:func:`dpaudit.io.jsonable`). Renderers and ``dpaudit check`` read attributes, so a renamed field fails
at once, in one place, instead of as a ``KeyError`` somewhere in a renderer.

``from_json`` validates the whole document: a missing field, an unknown field or a wrong type raises
:class:`~dpaudit.errors.DPAuditError` with one line naming the JSON path (``models[1].verdict.status missing``).

Versions. ``dpaudit.report/2`` is written. ``dpaudit.report/1`` documents load: each field added in /2 is
marked ``since=2`` below and takes its documented default (ceilings, ``could_detect`` and
``family_confidence`` null: they were not computed; ``family_correction`` null; no white-box block). A /1
document that already carries some /2 fields (written while the audit was being upgraded) keeps them.

Number convention. A field typed ``float`` always holds a number: JSON ``null`` in it means NaN (a value
that could not be computed, such as a bootstrap interval from no resamples). A field typed ``float | None``
is absent-by-meaning (a non-DP model claims no ε): ``null`` there is ``None``. Both accept ``"inf"``/``"-inf"``.

This module never imports torch; numpy comes in only through the attacks' metrics types, which it carries.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

# The attacks' metrics are the report's: one type, made by attacks.metrics.evaluate and carried as it is.
from dpaudit.attacks.metrics import AttackMetrics, Bootstrap, Counts, RateCount  # noqa: F401 (re-exported)
from dpaudit.errors import DPAuditError

SCHEMA = "dpaudit.report/2"
SCHEMA_V1 = "dpaudit.report/1"
SCHEMAS = {SCHEMA_V1: 1, SCHEMA: 2}

class Status(str, Enum):
    """A verdict's status: the one closed set, spelled once. A ``str`` enum, so that a status read from JSON
    compares equal to its member and a member writes as its plain string."""

    VIOLATION = "violation"
    CONSISTENT = "consistent"
    INCONCLUSIVE = "inconclusive"
    NONCONFORMANT = "nonconformant"
    NO_CLAIM = "no DP claim"

    def __str__(self) -> str:
        return self.value


STATUSES = tuple(s.value for s in Status)
TPR_LEVELS = ("0.001", "0.01", "0.1")


def since(version: int, default: Any = None, **kw):
    """A field added in schema ``version``: documents of older versions get ``default``."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"since": version, **kw})
    return field(default=default, metadata={"since": version, **kw})


# A block that any version may leave out (JSON absent or null both mean None).
OPTIONAL = {"optional": True}


# ---------------------------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Platform:
    machine: str
    cpus: int | None
    workers: int | None
    device: str


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float
    momentum: float


@dataclass(frozen=True)
class Recipes:
    non_dp: Recipe
    dp: Recipe


@dataclass(frozen=True)
class ReportConfig:
    """The audit configuration as recorded (``AuditConfig.to_dict``). A new AuditConfig field is added here
    with ``since(2, default)`` so that older reports still load."""
    dataset: str
    data_dir: str | None
    download: bool
    members: int
    n_test: int
    epsilons: tuple[float, ...]
    delta: float
    model: str | None  # null: not used (an audit of outputs only)
    epochs: int | None
    batch_size: int | None
    lr: float | None
    momentum: float | None
    max_grad_norm: float
    accountant: str
    grad_sample_mode: str
    shadow_models: int
    attacks: tuple[str, ...]
    shadow_classifier: str
    shadow_per_class: bool
    canaries: int
    confidence: float
    n_boot: int
    seed: int
    jobs: int
    device: str
    cache_dir: str | None
    recipes: Recipes
    executor: str = since(2, "local")
    gradient_canaries: int = since(2, 0)
    # Tabular records (left out by reports written before them): the mlp's hidden widths (null: its default),
    # a CSV's label column and the columns named categorical.
    hidden: tuple[int, ...] | None = since(2, **OPTIONAL)
    label_column: str | None = since(2, **OPTIONAL)
    categorical: tuple[str, ...] = since(2, (), **OPTIONAL)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str
    n_records: int
    n_classes: int
    sha256: str
    # Feature vectors (tabular records) only; null for images, and left out by reports written before them.
    n_features: int | None = since(2, **OPTIONAL)
    preprocessing: str | None = since(2, **OPTIONAL)


@dataclass(frozen=True)
class SplitInfo:
    seed: int
    n_test: int
    pool_size: int
    members: int
    n_models: int
    canaries: int
    canaries_in: int
    pool_sha256: str
    target_members_sha256: str


@dataclass(frozen=True)
class GradientCanaryRecord:
    """The white-box gradient canaries a training carried: how many, how many its fair coins included, and the
    norm of each canary's Dirac gradient (``dpaudit.core.whitebox.GradientCanaries``)."""
    m: int
    included: int
    dirac_norm: float


@dataclass(frozen=True)
class TrainingRecord:
    """One model's training record: what its training did and spent. The one type: ``dpaudit.training.train`` makes
    it, the model cache stores it (``to_dict`` / ``from_dict``) and the report carries the target's.

    ``observed`` False: dpaudit did not see this training (a target trained elsewhere, or only its outputs);
    the claim is the user's and what was not observed is null (:meth:`unobserved`)."""
    model: str
    dp: bool
    target_epsilon: float | None
    epsilon: float | None
    epsilon_per_epoch: tuple[float, ...]
    delta: float | None
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int | None
    max_grad_norm: float | None
    accountant: str | None
    grad_sample_mode: str | None
    poisson_sampling_checked: bool
    epochs: int | None
    batch_size: int | None
    lr: float | None
    momentum: float | None
    n_train: int
    train_accuracy: float | None
    test_accuracy: float | None
    train_loss: float | None
    seed: int | None
    wall_s: float | None
    device: str | None
    accounting_s: float | None
    dpaudit_version: str | None
    observed: bool = since(2, True)
    # White-box gradient canaries trained with the target, else null.
    gradient_canaries: GradientCanaryRecord | None = since(2)

    def to_dict(self) -> dict[str, Any]:
        return _encode(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "training record") -> TrainingRecord:
        """A stored record (the model cache's), validated as the report's records are. A record written before
        ``accounting_s``, ``dpaudit_version`` or ``gradient_canaries`` existed reads them as unknown (none ran), and
        one written before ``observed`` (training-side records never had it) as observed: dpaudit trained it."""
        if not isinstance(d, dict):
            raise DPAuditError(f"{where} must be an object, got {_kind(d)}")
        d = {"accounting_s": None, "dpaudit_version": None, "gradient_canaries": None, "observed": True, **d}
        return _decode_obj(cls, d, where, SCHEMAS[SCHEMA])

    @classmethod
    def unobserved(cls, *, dp: bool, epsilon: float | None, delta: float | None, n_train: int,
                   test_accuracy: float | None = None, model: str = "external") -> TrainingRecord:
        """The record of a target whose training dpaudit did not see: what the user claims, the rest unknown."""
        known = {"model": model, "dp": dp, "target_epsilon": epsilon if dp else None,
                 "epsilon": epsilon if dp else None, "epsilon_per_epoch": (), "delta": delta if dp else None,
                 "n_train": int(n_train), "test_accuracy": test_accuracy, "poisson_sampling_checked": False,
                 "observed": False}
        return cls(**{f.name: known.get(f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class ReferenceModels:
    k: int
    test_accuracy: tuple[float, ...]
    epsilon: tuple[float | None, ...]
    seeds: tuple[int, ...]
    cache_hits: int
    # What each reference trained on and, under DP, its sampling rate q and steps: the same as the target's
    # when it was trained like the target (null: not recorded, as in reports written before they were).
    n_train: tuple[int, ...] | None = since(2, **OPTIONAL)
    sample_rate: tuple[float, ...] | None = since(2, **OPTIONAL)
    steps: tuple[int, ...] | None = since(2, **OPTIONAL)


@dataclass(frozen=True)
class AccountantCheck:
    """Opacus's ε recomputed with Google's dp_accounting; ``flagged`` when they disagree."""
    opacus: float
    accountant: str
    dp_accounting_pld: float | None
    dp_accounting_rdp: float | None
    reference: str  # "pld", "rdp", or "none" when dp_accounting was not installed
    relative_difference: float | None
    flagged: bool
    note: str


@dataclass(frozen=True)
class Bounds:
    """What the claim allows: the most balanced accuracy / advantage any attack can reach against
    (claimed ε, δ)-DP (1.0 for a model without a claim)."""
    max_balanced_accuracy: float
    max_advantage: float
    delta: float


@dataclass(frozen=True)
class EpsilonBound:
    """A Clopper-Pearson ε lower bound and how its threshold was chosen: the one type, made by
    ``dpaudit.core.bounds`` and read by the report. ``direction`` says which DP inequality gave the bound:
    "tpr/fpr" (members too often guessed in), "tnr/fnr" (non-members too often guessed out), or "none" when the
    bound is 0."""

    value: float
    method: str
    threshold: float
    threshold_selection: str
    tp: int
    n_pos: int
    fp: int
    n_neg: int
    direction: str
    delta: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AttackResult:
    attack: str
    description: str
    metrics: AttackMetrics
    epsilon_lb: EpsilonBound
    # Largest ε lower bound a perfect attack could reach at this sample size and confidence (null: unknown).
    ceiling: float | None = since(2)
    # Choices the attack made on the reference models (RMIA's a, LiRA's query count, ...).
    details: dict[str, Any] = since(2, {})
    # Smallest true ε this attack's bound refutes with probability >= 80% (dpaudit.core.power; "inf": none up to its
    # limit; null: not measured, as in reports written before it was, or a model without a claim).
    detectable_epsilon: float | None = since(2, **OPTIONAL)


@dataclass(frozen=True)
class CanaryResult:
    method: str
    m: int
    included: int
    score: str
    epsilon_lb: float
    r: int
    v: int
    k_plus: int
    k_minus: int
    candidates_tried: tuple[int, ...]
    correction: str
    delta: float
    confidence: float
    test_accuracy_with_canaries: float
    test_accuracy_without_canaries: float | None
    without_canaries_from: str
    ceiling: float | None = since(2)
    # Smallest true ε the canary bound refutes with probability >= 80% (null: not measured).
    detectable_epsilon: float | None = since(2, **OPTIONAL)
    # The one membership rule's record (bounds.fair_coin_check): member share, binomial test, the rule applied.
    coin_check: dict[str, Any] | None = since(2, **OPTIONAL)


@dataclass(frozen=True)
class Verdict:
    """The claim against the best evidence. ``status`` is one of :data:`STATUSES`."""
    claimed_epsilon: float | None
    empirical_epsilon_lb: float
    source: str
    ratio: float | None
    status: str
    text: str
    confidence: float
    per_bound_confidence: float
    n_bounds: int
    correction: str
    # Largest ε lower bound any of the model's evidence could have shown (null: unknown).
    ceiling: float | None = since(2)
    # Whether the evidence could have shown a violation of the claim (ceiling above claim); null: unknown.
    could_detect: bool | None = since(2)
    # Confidence at which all of this report's verdicts hold together (null: no family correction).
    family_confidence: float | None = since(2)
    # Which evidence the ceiling came from, and the conformance tests that rejected (white-box canaries).
    ceiling_source: str | None = since(2)
    rejected_conformance: tuple[str, ...] = since(2, ())
    # Confidence of each canary route's bound when it differs from the attacks' (per_bound_confidence): the
    # weighted Bonferroni split of audit.bound_confidence; null: no canaries, or one confidence for all. /2
    # reports written before it existed leave it out (they used one confidence for all bounds).
    canary_confidence: float | None = since(2, **OPTIONAL)
    # Measured power (dpaudit.core.power): the smallest true ε the audit refutes with probability >= 80%, the evidence
    # it came from, the multiple of the claim "consistent" needs, how it was simulated, and the one step that
    # would decide an inconclusive verdict. Null: not measured (reports written before it was).
    detectable_epsilon: float | None = since(2, **OPTIONAL)
    detectable_source: str | None = since(2, **OPTIONAL)
    power_multiple: float | None = since(2, **OPTIONAL)
    power_method: str | None = since(2, **OPTIONAL)
    next_step: str | None = since(2, **OPTIONAL)


# A key a block leaves out when it has no value (``None``): written only when set, absent and null both read as
# None. The white-box block's layout grew over versions (power, the route list), and a probe's block leaves some out.
ABSENT = {"optional": True, "omit": True}
# The one field of a block that holds its further keys (``dict[str, Any]``), written beside the typed ones: a
# white-box route's or test's own numbers, whose keys differ from one route or test to the next.
REST = {"rest": True}


@dataclass(frozen=True)
class WhiteBoxTest:
    """One conformance test of the white-box block (``dpaudit.core.whitebox.analyse``; a probe adds structural
    checks, p-value 1 or 0). ``details``: the test's own figures (the claimed value it tests, ...)."""
    name: str
    statistic: float
    p_value: float
    passed: bool
    what: str
    # What a rejection means, in words (left out by the probe's structural checks and by earlier layouts).
    broken: str | None = field(default=None, metadata=ABSENT)
    details: dict[str, Any] = field(default_factory=dict, metadata=REST)


@dataclass(frozen=True)
class WhiteBoxRoute:
    """One ε lower-bound route of the white-box block (``dpaudit.core.whitebox_stats.bound_routes``), each at its
    own confidence with its own ceiling. ``valid`` False: an assumption it needs was rejected, so it does not
    count. ``canaries_needed``: how many canaries would lift its ceiling above the claim (null: none would, or it
    is already above). ``details``: the route's own counts (threshold, tp, fp, guesses, ...)."""
    route: str
    label: str
    confidence: float
    assumption: str
    epsilon_lb: float
    ceiling: float
    valid: bool
    canaries_needed: int | None
    details: dict[str, Any] = field(default_factory=dict, metadata=REST)


@dataclass(frozen=True)
class PowerPoint:
    """One simulated noise factor of the white-box power search: runs detected of n."""
    noise_factor: float
    detected: int
    n: int


@dataclass(frozen=True)
class WhiteBoxPower:
    """How the white-box route's detectable ε was measured (``dpaudit.core.power.whitebox_detectable``): every
    simulated noise factor, the detection rate at the chosen one with its exact 95% interval (null: none was
    detected up to the search's limit), and whether the claimed noise itself was (a false alarm)."""
    n_sims: int
    seed: int
    analysis_seed: int
    grid: float
    power: float
    points: tuple[PowerPoint, ...]
    n_tests: int
    null_detected: bool
    rate: float | None
    rate_ci: tuple[float, float] | None


@dataclass(frozen=True)
class WhiteBoxAudit:
    """The white-box gradient canaries' audit of one DP model: ``dpaudit.core.whitebox.analyse``'s result, with
    the ceilings and measured power the audit adds. Read by the renderers and the verdict by attribute; the gate
    (``dpaudit.check.recompute``) recomputes every number of its JSON form.

    ``bounds`` and ``final_model_bounds`` are the raw records each view's bounds come from (the one-run test's
    (m, r, v), the split-threshold counts), kept as written: only the gate reads them, key by key, and their layout
    differs between dpaudit versions."""
    m: int
    included: int
    steps: int
    confidence: float
    delta: float
    claimed_epsilon: float
    claimed_sigma: float
    claimed_q: float
    max_grad_norm: float
    dirac_norm: float
    epsilon_lb_one_run: float
    epsilon_lb_cp: float
    bounds: dict[str, Any]
    final_model_epsilon_lb_one_run: float
    final_model_epsilon_lb_cp: float
    final_model_bounds: dict[str, Any]
    tests: tuple[WhiteBoxTest, ...]
    conformant: bool
    failed: tuple[str, ...]
    # NaN (null) where no canary was out (σ̂) or in (q̂)
    sigma_hat: float
    sigma_ci: tuple[float, float]
    q_hat: float
    q_ci: tuple[float, float]
    empirical_epsilon: float | None
    empirical_epsilon_ci: tuple[float, float] | None
    accountant: str
    notes: tuple[str, ...]
    # what the verdict reads: the best counted route's bound and the largest counted ceiling
    epsilon_lb: float
    ceiling: float
    ceiling_one_run: float
    ceiling_cp: float
    # the full analysis's route list and what follows from it (left out by earlier layouts)
    routes: tuple[WhiteBoxRoute, ...] | None = field(default=None, metadata=ABSENT)
    best_route: str | None = field(default=None, metadata=ABSENT)
    epsilon_lb_best: float | None = field(default=None, metadata=ABSENT)
    epsilon_lb_per_step: float | None = field(default=None, metadata=ABSENT)
    broken: tuple[str, ...] | None = field(default=None, metadata=ABSENT)
    routes_text: str | None = field(default=None, metadata=ABSENT)
    # measured power (dpaudit.core.power.whitebox_detectable): the detectable ε "inf" (and the factor null) when no
    # noise factor in the search was detected; both null when the claim is not finite, and left out by a block
    # written before power was measured (read as null); the simulation's record left out with them
    detectable_noise_factor: float | None = field(default=None, metadata=OPTIONAL)
    detectable_epsilon: float | None = field(default=None, metadata=OPTIONAL)
    detectable_power: WhiteBoxPower | None = field(default=None, metadata=ABSENT)

    @classmethod
    def from_dict(cls, d: Any, where: str = "whitebox") -> WhiteBoxAudit:
        """The typed block of a plain dict (an analysis's, numpy scalars and all; a report's block), validated as a
        report's block is when read."""
        return from_plain(cls, d, where)

    def with_power(self, power: dict[str, Any] | None) -> WhiteBoxAudit:
        """This block with its measured power (``dpaudit.core.power.whitebox_detectable``'s dict; None: not
        measured)."""
        if not power:
            return self
        return from_plain(WhiteBoxAudit, {**self.to_json(), **power}, "whitebox")

    def to_json(self) -> dict[str, Any]:
        """The block as report.json holds it (what the gate checks key by key)."""
        from dpaudit.io import jsonable

        return jsonable(_encode(self))

    def failed_tests(self) -> list[WhiteBoxTest]:
        return [t for t in self.tests if not t.passed]

    def counted_routes(self) -> list[WhiteBoxRoute]:
        """The routes whose assumptions held (those the verdict counts)."""
        return [r for r in self.routes or () if r.valid]


@dataclass(frozen=True)
class ModelAudit:
    name: str
    dp: bool
    target_epsilon: float | None
    training: TrainingRecord
    reference_models: ReferenceModels
    accountant_check: AccountantCheck | None
    bounds: Bounds
    attacks: tuple[AttackResult, ...]
    canary: CanaryResult | None
    verdict: Verdict
    # White-box gradient canaries (--gradient-canaries; a probe's report): null on a model without them.
    whitebox: WhiteBoxAudit | None = field(default=None, metadata=OPTIONAL)

    def bound_sources(self) -> list[tuple[str, float, float | None]]:
        """(evidence, ε lower bound, ceiling) for every attack, the canaries and a white-box block that
        states an ``epsilon_lb``."""
        out = [(f"{a.attack} attack", a.epsilon_lb.value, a.ceiling) for a in self.attacks]
        if self.canary is not None:
            out.append(("canaries (one run)", self.canary.epsilon_lb, self.canary.ceiling))
        if self.whitebox is not None:
            out.append(("white-box canaries", self.whitebox.epsilon_lb, self.whitebox.ceiling))
        return out

    def detectable_sources(self) -> list[tuple[str, float]]:
        """(evidence, detectable ε) for every piece of evidence that states its measured power."""
        out = [(f"{a.attack} attack", a.detectable_epsilon) for a in self.attacks]
        if self.canary is not None:
            out.append(("canaries (one run)", self.canary.detectable_epsilon))
        if self.whitebox is not None:
            out.append(("white-box canaries", self.whitebox.detectable_epsilon))
        return [(s, d) for s, d in out if d is not None and not math.isnan(d)]


@dataclass(frozen=True)
class AlphaSpending:
    """The α spent on a report's models (``dpaudit.core.plan.alpha_spending``), on a schedule fixed in advance
    (``schedule``; ``dpaudit.core.bounds.alpha_share``): the original audit (``rerun`` 0) spends α/2, re-run r
    α/2^(r+1). ``combined_confidence`` = 1 − ``alpha_spent_total``: the confidence at which the verdicts of every run
    on these models so far hold together."""
    schedule: str
    rerun: int
    alpha: float
    alpha_this_run: float
    alpha_spent_before: float
    alpha_spent_total: float
    combined_confidence: float


@dataclass(frozen=True)
class Report:
    schema: str
    created_utc: str
    command: str | None
    versions: dict[str, str | None]
    platform: Platform
    config: ReportConfig
    dataset: DatasetInfo
    split: SplitInfo
    threshold_policy: str
    models: tuple[ModelAudit, ...]
    timing_s: dict[str, float]
    worker_s: dict[str, float]
    # How verdicts were corrected to hold together across models (e.g. "Bonferroni over 2 DP models").
    family_correction: str | None = since(2)
    # False when dpaudit did not see the target's training (--target, --from-signals).
    observed_training: bool = since(2, True)
    # α-spending across re-runs on the same models (bounds.alpha_share). Null: written before the schedule existed
    # (such an audit spent all of α itself).
    alpha_spending: AlphaSpending | None = since(2, **OPTIONAL)

    def to_json(self) -> dict:
        """The JSON-ready document (always the current schema): plain dicts, lists, str, numbers, null."""
        from dpaudit.io import jsonable

        doc = _encode(self)
        doc["schema"] = SCHEMA
        return jsonable(doc)

    @classmethod
    def from_json(cls, doc: Any) -> Report:
        """Validate and load a report document of any supported schema version."""
        if not isinstance(doc, dict):
            raise DPAuditError(f"a report must be a JSON object, got {_kind(doc)}")
        if "schema" not in doc:
            raise DPAuditError("schema missing: this is not a dpaudit report")
        version = SCHEMAS.get(doc["schema"])
        if version is None:
            raise DPAuditError(f"schema {doc['schema']!r} is not supported: this dpaudit reads "
                               f"{' and '.join(SCHEMAS)}; is it a dpaudit report, from a newer version?")
        report = _decode_obj(cls, doc, "", version)
        names: dict[str, int] = {}
        for i, m in enumerate(report.models):
            if m.name in names:
                raise DPAuditError(f"models[{i}].name {m.name!r} repeats models[{names[m.name]}].name; "
                                   "each model needs its own name")
            names[m.name] = i
        return dataclasses.replace(report, schema=SCHEMA)

    def model(self, name: str) -> ModelAudit:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def validate(obj: Any, path: str = "") -> None:
    """Check a report built in memory (``dpaudit.core.plan.report_document``) against its types, as
    ``from_json`` checks one read from a file: every field holds its declared type, the open blocks hold JSON
    values only, and the closed-set rules hold. One line names the path of the first offence."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"validate takes a schema dataclass, got {type(obj).__name__}")
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.init:
            _validate_value(hints[f.name], getattr(obj, f.name), _join(path, f.name))
    _post_check(obj, path)


def _validate_value(tp: Any, v: Any, path: str) -> None:
    origin = typing.get_origin(tp)
    if tp is Any:
        from dpaudit.io import jsonable

        _check_plain(jsonable(v), path)  # as it will be written: numpy scalars and arrays become JSON values
    elif origin in (Union, types.UnionType):
        if v is not None:
            _validate_value([a for a in typing.get_args(tp) if a is not type(None)][0], v, path)
    elif tp in (float, int):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or (tp is int and not isinstance(v, numbers.Integral)):
            raise DPAuditError(f"{path} must be {'an integer' if tp is int else 'a number'}, got {_kind(v)}")
    elif tp in (bool, str):
        if not (isinstance(v, tp) or (tp is bool and getattr(getattr(v, "dtype", None), "kind", "") == "b")):
            raise DPAuditError(f"{path} must be {'true or false' if tp is bool else 'a string'}, got {_kind(v)}")
    elif origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise DPAuditError(f"{path} must be a list, got {_kind(v)}")
        args = typing.get_args(tp)
        each = [args[0]] * len(v) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(each) != len(v):
            raise DPAuditError(f"{path} must be a list of {len(each)}, got {len(v)} items")
        for i, (a, x) in enumerate(zip(each, v)):
            _validate_value(a, x, f"{path}[{i}]")
    elif origin is dict:
        if not isinstance(v, dict):
            raise DPAuditError(f"{path} must be an object, got {_kind(v)}")
        for k, x in v.items():
            if not isinstance(k, str):
                raise DPAuditError(f"{path} has a non-string key {k!r}")
            _validate_value(typing.get_args(tp)[1], x, _join(path, k))
    elif dataclasses.is_dataclass(tp):
        if not isinstance(v, tp):
            raise DPAuditError(f"{path} must be {tp.__name__}, got {_kind(v)}")
        validate(v, path)
    else:
        raise TypeError(f"schema type {tp!r} at {path} has no validator")  # a bug in this module


def from_plain(cls: type, d: Any, where: str) -> Any:
    """A schema block of type ``cls`` from plain values (numpy scalars, tuples and non-finite floats allowed, as
    :func:`dpaudit.io.jsonable` writes them), validated as a report's block is when read; ``where`` names it in
    the one-line error."""
    from dpaudit.io import jsonable

    return _decode_obj(cls, jsonable(d), where, SCHEMAS[SCHEMA])


def as_report(x: Any) -> Report:
    """The one conversion point: a Report passes through, a dict (what ``run_audit`` returns today, or a
    parsed report.json) is validated by :meth:`Report.from_json`."""
    if isinstance(x, Report):
        return x
    return Report.from_json(x)


# ------------------------------------------------------------------------------------- encode / decode


def _encode(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        out = {}
        for f in dataclasses.fields(x):
            v = getattr(x, f.name)
            if f.metadata.get("rest"):
                out.update({str(k): _encode(w) for k, w in v.items() if str(k) not in out})
            elif not (v is None and f.metadata.get("omit")):
                out[f.name] = _encode(v)
        return out
    if isinstance(x, dict):
        return {str(k): _encode(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_encode(v) for v in x]
    return x


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        r = repr(v)
        return "the string " + (r if len(r) <= 40 else r[:37] + "...'")
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _join(path: str, key: str) -> str:
    if not key.isprintable() or not key or len(key) > 60:
        key = repr(key[:60])  # a hostile key must not break the one-line message
    return f"{path}.{key}" if path else key


def _decode_obj(cls: type, obj: Any, path: str, version: int):
    where = path or "the report"
    if not isinstance(obj, dict):
        raise DPAuditError(f"{where} must be an object, got {_kind(obj)}")
    hints = _hints(cls)
    flds = {f.name: f for f in dataclasses.fields(cls)}
    rest = next((f.name for f in flds.values() if f.metadata.get("rest")), None)
    unknown = [k for k in obj if k not in flds or k == rest]
    if unknown and rest is None:
        raise DPAuditError(f"{_join(path, str(unknown[0]))} is not a field of {SCHEMA} (unknown field)")
    kw = {}
    if rest is not None:
        kw[rest] = _decode(hints[rest], {k: obj[k] for k in unknown}, path, version)
    for name, f in flds.items():
        if name == rest:
            continue
        if not f.init:
            continue  # a derived field (Counts' rates): made from the others below, and checked against the file
        p = _join(path, name)
        if name not in obj:
            if f.metadata.get("optional") or f.metadata.get("since", 1) > version:
                continue  # its default
            raise DPAuditError(f"{p} missing")
        kw[name] = _decode(hints[name], obj[name], p, version)
    out = cls(**kw)
    for name, f in flds.items():
        if not f.init and name in obj:
            stored, made = _decode(hints[name], obj[name], _join(path, name), version), getattr(out, name)
            if not (stored == made or (isinstance(made, float) and math.isclose(stored, made, rel_tol=1e-6,
                                                                                abs_tol=1e-8))
                    or (isinstance(made, float) and math.isnan(made) and math.isnan(stored))):
                raise DPAuditError(f"{_join(path, name)} is {stored:g} but {f.metadata.get('derived', 'the rest')} "
                                   f"gives {made:g}")
    _post_check(out, path)
    return out


def _decode(tp: Any, v: Any, path: str, version: int):
    origin = typing.get_origin(tp)
    if tp is Any:
        _check_plain(v, path)
        return v
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if v is None:
            return None
        return _decode(args[0], v, path, version)
    if tp is float:
        if v is None:
            return math.nan  # NaN is written as null
        if v in ("inf", "-inf") or (isinstance(v, numbers.Real) and not isinstance(v, bool)):
            return float(v)
        raise DPAuditError(f"{path} must be a number, got {_kind(v)}")
    if tp is int:
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            return int(v)
        raise DPAuditError(f"{path} must be an integer, got {_kind(v)}")
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise DPAuditError(f"{path} must be true or false, got {_kind(v)}")
    if tp is str:
        if isinstance(v, str):
            return v
        raise DPAuditError(f"{path} must be a string, got {_kind(v)}")
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise DPAuditError(f"{path} must be a list, got {_kind(v)}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], x, f"{path}[{i}]", version) for i, x in enumerate(v))
        if len(v) != len(args):
            raise DPAuditError(f"{path} must be a list of {len(args)}, got {len(v)} items")
        return tuple(_decode(a, x, f"{path}[{i}]", version) for i, (a, x) in enumerate(zip(args, v)))
    if origin is dict:
        if not isinstance(v, dict):
            raise DPAuditError(f"{path} must be an object, got {_kind(v)}")
        _, vt = typing.get_args(tp)
        return {str(k): _decode(vt, x, _join(path, str(k)), version) for k, x in v.items()}
    if dataclasses.is_dataclass(tp):
        return _decode_obj(tp, v, path, version)
    raise TypeError(f"schema type {tp!r} at {path} has no decoder")  # a bug in this module, not in the file


def _check_plain(v: Any, path: str) -> None:
    """An open block holds JSON values only."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return
    if isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _check_plain(x, f"{path}[{i}]")
        return
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise DPAuditError(f"{path} has a non-string key {k!r}")
            _check_plain(x, _join(path, k))
        return
    raise DPAuditError(f"{path} must hold JSON values, got {_kind(v)}")


def _post_check(obj: Any, path: str) -> None:
    """Rules a type cannot say: closed sets of values and required keys, and a block's further keys (its REST
    field) never named like one of its fields (written beside them, one would hide the other)."""
    for f in dataclasses.fields(obj):
        if f.metadata.get("rest"):
            clash = sorted(set(getattr(obj, f.name)) & {g.name for g in dataclasses.fields(obj)})
            if clash:
                raise DPAuditError(f"{_join(path, f.name)} holds {clash[0]!r}, a field of its own block; set the "
                                   f"field instead")
    if isinstance(obj, Verdict) and obj.status not in STATUSES:
        raise DPAuditError(f"{_join(path, 'status')} must be one of {', '.join(repr(s) for s in STATUSES)}, "
                           f"got {obj.status!r}")
    if isinstance(obj, AttackMetrics):
        for level in TPR_LEVELS:
            if level not in obj.tpr_at_fpr:
                raise DPAuditError(f"{_join(path, 'tpr_at_fpr')}.{level} missing")
        for key in list(obj.tpr_at_fpr) + list(obj.tpr_at_fpr_counts or {}):
            try:
                ok = 0.0 < float(key) < 1.0
            except ValueError:
                ok = False
            if not ok:
                raise DPAuditError(f"{_join(path, 'tpr_at_fpr')} key {key!r} is not an FPR level in (0, 1)")


# ------------------------------------------------------------------------------------ verdict from numbers

# "consistent" needs the measured detectable ε at most this multiple of the claim (one constant: the stage
# that decides a verdict and every recomputation read it from here).
POWER_MULTIPLE = 2.0

# How bad a status is, for "the worse of two": a stored status can make a verdict worse, never better.
SEVERITY = {Status.NO_CLAIM: 0, Status.CONSISTENT: 1, Status.INCONCLUSIVE: 2, Status.NONCONFORMANT: 3,
            Status.VIOLATION: 4}


def verdict_status(*, claimed: float | None, best: float | None, detectable: float | None, nonconformant: bool,
                   power_multiple: float = POWER_MULTIPLE) -> Status:
    """The one verdict rule, read by the stage that decides a verdict (``dpaudit.core.bounds.decide_verdict``)
    and by everything that recomputes one from a saved report (``evidence``, ``dpaudit check``). First match:
    no claim; nonconformant (the training did not do what its accounting assumes); violation (a lower bound
    above the claim); consistent (not refuted, and the measured detectable ε is at most ``power_multiple`` x the
    claim); else inconclusive."""
    if claimed is None:
        return Status.NO_CLAIM
    if nonconformant:
        return Status.NONCONFORMANT
    if best is not None and best > claimed:
        return Status.VIOLATION
    if detectable is not None and detectable <= power_multiple * claimed:
        return Status.CONSISTENT
    return Status.INCONCLUSIVE


@dataclass(frozen=True)
class Evidence:
    """What a model's numbers say, recomputed from its bounds and claim (never from the stored status)."""
    claimed: float | None  # the accountant's ε of a DP model; None without DP
    best_lb: float | None  # largest ε lower bound over every piece of evidence; None when there is none
    best_source: str | None
    missing: tuple[str, ...]  # evidence whose bound is NaN / null: not computed
    ceiling: float | None  # largest bound any evidence could have shown; None when unknown
    status: str  # "violation", "inconclusive", "consistent" or "no DP claim"
    detectable: float | None = None  # smallest detectable ε over the evidence (measured power); None: not measured
    detectable_source: str | None = None


def evidence(m: ModelAudit) -> Evidence:
    """Recompute a model's verdict from its bounds, measured power and claim.

    violation: some ε lower bound exceeds the claimed ε. consistent: none does, and the audit's detectable ε
    (the smallest over its evidence of the true ε each refutes with probability >= 80%) is at most
    ``POWER_MULTIPLE`` times the claim. inconclusive: otherwise, including when power was not measured (a
    report written before it was: nothing then shows the audit could have seen a leak). nonconformant: a
    white-box block whose conformance tests rejected (``conformant`` false), or any test listed failed, whatever
    the stored status says. The ceiling (the most a perfect attack could show) is reported, not used: its
    evidence's own ceilings decide, the stored verdict's only where one is missing."""
    sources = m.bound_sources()
    missing = tuple(s for s, v, _ in sources if math.isnan(v))
    vals = [(v, s) for s, v, _ in sources if not math.isnan(v)]
    best, best_src = max(vals) if vals else (None, None)
    ceilings = [c for _, _, c in sources]
    known = [c for c in ceilings if c is not None and not math.isnan(c)]
    ceiling = m.verdict.ceiling if m.verdict.ceiling is not None and not math.isnan(m.verdict.ceiling) else None
    if sources and len(known) == len(ceilings):
        ceiling = max(known)
    claimed_ = m.training.epsilon if m.training.epsilon is not None else m.verdict.claimed_epsilon
    ceiling_of = {s: c for s, _, c in sources}
    # A route that refutes only through its bound (an attack, black-box canaries) cannot refute a claim at or
    # above its ceiling, whatever power it states: such a figure counts as "not detectable" (a report whose
    # numbers contradict each other never reads consistent). White-box canaries also refute through their
    # conformance tests, which no ceiling limits.
    dets = [(math.inf if (claimed_ is not None and not s.startswith("white-box") and ceiling_of.get(s) is not None
                          and not math.isnan(ceiling_of[s]) and ceiling_of[s] <= claimed_) else d, s)
            for s, d in m.detectable_sources()]
    if dets:
        det_v, det_src = min(dets)
    else:
        # the stored verdict's figure only where no evidence states its own
        det_v = m.verdict.detectable_epsilon
        det_v = None if det_v is None or math.isnan(det_v) else det_v
        det_src = m.verdict.detectable_source if det_v is not None else None
    if not m.dp:
        return Evidence(None, best, best_src, missing, ceiling, Status.NO_CLAIM, det_v, det_src)
    claimed = m.training.epsilon if m.training.epsilon is not None else m.verdict.claimed_epsilon
    if claimed is None or math.isnan(claimed):
        claimed = None
    wb = m.whitebox
    status = verdict_status(claimed=claimed, best=best, detectable=det_v,
                            nonconformant=bool((wb is not None and (not wb.conformant or wb.failed_tests()))
                                               or m.verdict.rejected_conformance))
    return Evidence(claimed, best, best_src, missing, ceiling, status, det_v, det_src)


def effective_status(m: ModelAudit) -> str:
    """The worse of the stored status and the recomputed one: numbers can overrule a stored "consistent",
    and a stored "nonconformant" or "violation" is never softened."""
    return max(m.verdict.status, evidence(m).status, key=SEVERITY.__getitem__)
