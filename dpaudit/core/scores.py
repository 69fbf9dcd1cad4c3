"""Reading anybody's per-record scores: a CSV with is_member (1/0) and score (higher = member)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from dpaudit.errors import DPAuditError


def read_scores_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(is_member bool [n], score float [n]); any malformed row is a one-line error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise DPAuditError(f"scores file {path} not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM (Excel's UTF-8) is not part of the header
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            if "is_member" not in cols or "score" not in cols:
                raise DPAuditError(f"{path}: needs the columns is_member,score (found {','.join(cols) or 'none'})")
            members, scores = [], []
            for row in reader:
                line = reader.line_num
                m, s = (row.get("is_member") or "").strip(), (row.get("score") or "").strip()
                if m not in ("0", "1"):
                    raise DPAuditError(f"{path}:{line}: is_member must be 1 or 0, got {m!r}")
                try:
                    v = float(s)
                except ValueError:
                    raise DPAuditError(f"{path}:{line}: score {s!r} is not a number") from None
                if not math.isfinite(v):
                    raise DPAuditError(f"{path}:{line}: score must be finite, got {s!r}")
                members.append(m == "1")
                scores.append(v)
    except UnicodeDecodeError:
        raise DPAuditError(f"{path} is not a UTF-8 CSV file") from None
    except csv.Error as exc:
        raise DPAuditError(f"{path}: malformed CSV ({exc})") from None
    is_member = np.asarray(members, dtype=bool)
    n_in, n_out = int(is_member.sum()), int((~is_member).sum())
    if n_in < 2 or n_out < 2:
        raise DPAuditError(f"{path}: needs at least two members and two non-members (has {n_in} and {n_out})")
    return is_member, np.asarray(scores, dtype=float)


MEMBERSHIP_ASSUMPTION_ONE_RUN = (
    "each record was made a member by its own independent coin (of any bias: the balanced guesses, k 'in' and k "
    "'out', keep the bound valid at the observed member share); the bound is conditional on this independence, "
    "which a scores CSV cannot show")
MEMBERSHIP_ASSUMPTION_CP = (
    "membership was decided at random among records of one population (e.g. a random split), so that members' "
    "and non-members' scores differ only through training; the bound is conditional on this, which a scores "
    "CSV cannot show")


def fair_coin_p_value(is_member: np.ndarray) -> float:
    """Exact two-sided binomial test of the number of members out of n against p = 1/2 (what independent fair
    coins predict): ``dpaudit.core.bounds.fair_coin_check``'s p-value."""
    from dpaudit.core.bounds import fair_coin_check

    return float(fair_coin_check(is_member)["p_value"])


def epsilon_from_scores(is_member: np.ndarray, scores: np.ndarray, *, method: str, delta: float,
                        confidence: float = 0.95, threshold: float | None = None,
                        guesses: int | None = None) -> dict:
    """An epsilon lower bound from scores alone, with a threshold chosen validly (fixed in advance,
    or Bonferroni-corrected over the candidates tried).

    one-run applies the one membership rule of every coin-based route (``bounds.fair_coin_check`` and the
    balanced guesses of ``bounds.one_run_audit_balanced``, valid at any member share): ``--guesses k`` guesses
    "in" for the k highest scores and "out" for the k lowest, ``--threshold T`` guesses "in" for scores >= T and
    "out" for as many of the lowest. Both methods' output carries an "assumptions" entry saying how membership
    must have been decided for the bound to hold, since the CSV cannot say."""
    from dpaudit.core.bounds import (
        bonferroni_threshold_epsilon_lb,
        fair_coin_check,
        fixed_threshold_epsilon_lb,
        one_run_audit_balanced,
    )

    if not 0 <= delta < 1:
        raise DPAuditError(f"--delta must be in [0, 1), got {delta}")
    # same range as `dpaudit audit`: below 0.5 a "lower bound" is more likely wrong than right
    if not 0.5 <= confidence < 1:
        raise DPAuditError(f"--confidence must be in [0.5, 1), got {confidence}")
    if threshold is not None and not math.isfinite(threshold):
        raise DPAuditError(f"--threshold must be a finite number, got {threshold}")
    if threshold is not None and guesses is not None:
        raise DPAuditError("give --threshold or --guesses, not both")
    base = {"method": method, "delta": delta, "confidence": confidence, "n_members": int(is_member.sum()),
            "n_nonmembers": int((~is_member).sum())}
    if method == "one-run":
        coin_test = fair_coin_check(is_member)
        half = len(scores) // 2
        if threshold is not None:
            k = int((scores >= threshold).sum())
            if not 1 <= k <= half:
                raise DPAuditError(f"--threshold {threshold} makes {k} 'in' guesses; one-run guesses as many 'out' "
                                   f"(the lowest scores), so it needs 1 to {half}: choose another threshold")
            res = one_run_audit_balanced(scores, is_member, delta=delta, confidence=confidence, k_candidates=[k])
        elif guesses is not None:
            if not 1 <= guesses <= half:
                raise DPAuditError(f"--guesses must be in [1, {half}] for one-run (k 'in' and k 'out' guesses on "
                                   f"{len(scores)} records), got {guesses}")
            res = one_run_audit_balanced(scores, is_member, delta=delta, confidence=confidence,
                                         k_candidates=[guesses])
        else:
            res = one_run_audit_balanced(scores, is_member, delta=delta, confidence=confidence)
        d = res.to_dict()
        return {**base, "epsilon_lower_bound": d["epsilon_lb"], **{k: v for k, v in d.items() if k != "epsilon_lb"},
                "assumptions": {"membership": MEMBERSHIP_ASSUMPTION_ONE_RUN, "fair_coin_test": coin_test}}
    if method == "clopper-pearson":
        if guesses is not None:
            if not 1 <= guesses <= len(scores):
                raise DPAuditError(f"--guesses must be in [1, {len(scores)}], got {guesses}")
            threshold = float(np.sort(scores)[::-1][guesses - 1])
        if threshold is not None:
            res = fixed_threshold_epsilon_lb(scores, is_member, threshold, delta=delta, confidence=confidence)
        else:
            res = bonferroni_threshold_epsilon_lb(scores, is_member, delta=delta, confidence=confidence)
        d = res.to_dict()
        out = {**base, "epsilon_lower_bound": d["value"],
               **{k: v for k, v in d.items() if k not in ("value", "method")},
               "assumptions": {"membership": MEMBERSHIP_ASSUMPTION_CP}}
        if guesses is not None:
            # Scores tied with the k-th highest are guessed too; the bound uses the guesses actually made.
            out["guesses_requested"] = int(guesses)
            out["guesses_made"] = int((scores >= threshold).sum())
        return out
    raise DPAuditError(f"--method must be one-run or clopper-pearson, got {method!r}")
