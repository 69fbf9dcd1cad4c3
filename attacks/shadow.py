"""Shadow-model attack (Shokri et al., 2017, "Membership Inference Attacks against Machine Learning
Models"): learn, on reference ("shadow") models whose training sets are known, a classifier from a
model's output on a record to "was this record in its training set", then apply it to the target.

Inputs are softmax outputs, never models, so this module needs no torch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from .groups import can_cross_fit, check_groups, outside

__all__ = ["CLASSIFIERS", "ShadowAttack", "cross_fit_reference_scores", "shadow_features"]

CLASSIFIERS = ("gbm", "logreg", "mlp")
_LOG_FLOOR = 1e-12


def _check_probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    lab = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [n, C], got shape {p.shape}")
    if lab.ndim != 1 or lab.shape[0] != p.shape[0]:
        raise ValueError(f"labels must be 1-D of length {p.shape[0]}, got shape {lab.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs must be finite")
    if not np.issubdtype(lab.dtype, np.integer):
        try:
            as_float = lab.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError("labels must be integer class indices") from None
        if not np.all(as_float == np.round(as_float)):
            raise ValueError("labels must be integer class indices")
    lab = lab.astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= p.shape[1]):
        raise ValueError(f"labels must be in [0, {p.shape[1]}), got range [{lab.min()}, {lab.max()}]")
    return p, lab


def shadow_features(probs: Any, labels: Any, top_k: int = 3) -> np.ndarray:
    """Per-record features [n, top_k + 1]: the top-k probabilities in descending order, then the
    probability of the true label.

    Sorting makes the features class-agnostic (one attack model serves all classes); the
    true-label probability adds what sorting throws away. With fewer than top_k classes the
    missing entries are 0, which is what those absent classes' probability is.
    """
    if int(top_k) < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    top_k = int(top_k)
    p, lab = _check_probs_labels(probs, labels)
    n, c = p.shape
    k = min(top_k, c)
    top = -np.sort(-p, axis=1)[:, :k]
    if k < top_k:
        top = np.hstack([top, np.zeros((n, top_k - k))])
    true_p = p[np.arange(n), lab]
    return np.hstack([top, true_p[:, None]])


def _log_features(x: np.ndarray) -> np.ndarray:
    # probabilities of members crowd near 1 and of non-members spread over (0, 1); the log spreads
    # the near-1 region so a linear model can separate it
    return np.log(np.clip(x, _LOG_FLOOR, None))


def _make_classifier(kind: str, seed: int) -> BaseEstimator:
    if kind == "gbm":
        return HistGradientBoostingClassifier(random_state=seed)
    if kind == "logreg":
        return make_pipeline(FunctionTransformer(_log_features), StandardScaler(),
                             LogisticRegression(max_iter=1000, random_state=seed))
    if kind == "mlp":
        # scaling matters for an MLP's optimiser; early stopping keeps it from memorising the
        # reference rows
        return make_pipeline(StandardScaler(),
                             MLPClassifier(hidden_layer_sizes=(64,), early_stopping=True,
                                           max_iter=300, random_state=seed))
    raise ValueError(f"unknown classifier {kind!r}; choose one of {', '.join(CLASSIFIERS)}")


def _member_proba(clf: BaseEstimator, x: np.ndarray) -> np.ndarray:
    col = int(np.flatnonzero(clf.classes_ == 1)[0])
    return clf.predict_proba(x)[:, col]


def _check_reference(ref_probs: Any, ref_labels: Any, ref_in: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(ref_probs, dtype=np.float64)
    y = np.asarray(ref_in)
    if p.ndim != 3:
        raise ValueError(f"ref_probs must be 3-D [K, n, C], got shape {p.shape}")
    if y.shape != p.shape[:2]:
        raise ValueError(f"ref_in must have shape [K, n] = {p.shape[:2]}, got {y.shape}")
    if y.dtype != bool:
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("ref_in must be binary (0/1 or bool)")
        y = y == 1
    _, lab = _check_probs_labels(p[0], ref_labels)
    return p, lab, y


class ShadowAttack:
    """Shadow-model membership classifier on ``shadow_features``.

    ``classifier``: "gbm" (HistGradientBoostingClassifier, the default: fast and needs no
    scaling), "logreg" (StandardScaler + LogisticRegression on log-features) or "mlp"
    (MLPClassifier, one hidden layer of 64, early stopping). ``per_class`` fits one classifier per
    true class, as Shokri et al. do; a class whose reference rows carry a single membership
    label falls back to the global classifier.
    """

    def __init__(self, classifier: str = "gbm", per_class: bool = False, top_k: int = 3,
                 seed: int = 0) -> None:
        if classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
        if int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.classifier = classifier
        self.per_class = bool(per_class)
        self.top_k = int(top_k)
        self.seed = int(seed)
        self.global_model_: BaseEstimator | None = None
        self.class_models_: dict[int, BaseEstimator] = {}

    def __repr__(self) -> str:
        return (f"ShadowAttack(classifier={self.classifier!r}, per_class={self.per_class}, "
                f"top_k={self.top_k}, seed={self.seed})")

    def fit(self, ref_probs: Any, ref_labels: Any, ref_in: Any) -> ShadowAttack:
        """Fit on reference models' outputs: ``ref_probs`` [K, n, C], ``ref_labels`` [n] (the
        records' true classes, shared by all references), ``ref_in`` [K, n] (membership)."""
        p, lab, y = _check_reference(ref_probs, ref_labels, ref_in)
        k, n, _ = p.shape
        x = np.vstack([shadow_features(p[j], lab, self.top_k) for j in range(k)])
        yy = y.reshape(-1).astype(np.int64)
        cls = np.tile(lab, k)
        if yy.min() == yy.max():
            raise ValueError("reference membership has a single label; need both members and non-members")
        base = _make_classifier(self.classifier, self.seed)
        self.global_model_ = clone(base).fit(x, yy)
        self.class_models_ = {}
        if self.per_class:
            for c in np.unique(cls):
                m = cls == c
                if yy[m].min() != yy[m].max():
                    self.class_models_[int(c)] = clone(base).fit(x[m], yy[m])
        return self

    def score(self, probs: Any, labels: Any) -> np.ndarray:
        """Member probability for each record of a model's outputs ``probs`` [n, C] with true
        ``labels`` [n]; higher = more likely member."""
        if self.global_model_ is None:
            raise NotFittedError("ShadowAttack is not fitted; call fit() first")
        x = shadow_features(probs, labels, self.top_k)
        lab = np.asarray(labels).astype(np.int64)
        out = _member_proba(self.global_model_, x) if x.shape[0] else np.zeros(0)
        for c, clf in self.class_models_.items():
            m = lab == c
            if m.any():
                out[m] = _member_proba(clf, x[m])
        return out


def cross_fit_reference_scores(ref_probs: Any, ref_labels: Any, ref_in: Any, groups: Any = None,
                               **attack_kwargs: Any) -> np.ndarray:
    """Out-of-sample attack scores for the reference models themselves, [K, n].

    Row k is scored by an attack fitted on the references outside k's group (``groups``, see
    attacks.groups; None: the other K-1). Thresholds calibrated on
    in-sample scores would be tuned to the attack classifier's own overfitting; these scores
    behave like the target's. ``attack_kwargs`` go to ``ShadowAttack``.
    """
    p, lab, y = _check_reference(ref_probs, ref_labels, ref_in)
    k = p.shape[0]
    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 reference models, got {k}")
    g = check_groups(groups, k)
    if not can_cross_fit(g):
        raise ValueError("every reference model needs another one outside its group to fit the attack on")
    out = np.empty(p.shape[:2], dtype=np.float64)
    for j in range(k):
        rest = outside(g, j)
        attack = ShadowAttack(**attack_kwargs).fit(p[rest], lab, y[rest])
        out[j] = attack.score(p[j], lab)
    return out
