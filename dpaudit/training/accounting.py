"""Privacy accounting: epsilon from Opacus's accountants, and an independent recomputation with
Google's dp_accounting so that a report can show the two side by side."""
from __future__ import annotations

import math

from dpaudit.errors import DPAuditError
from dpaudit.schema import AccountantCheck

CROSSCHECK_TOLERANCE = 0.02  # relative; above this the report flags the model


def opacus_epsilon(sample_rate: float, noise_multiplier: float, steps: int, delta: float,
                   accountant: str = "rdp") -> float:
    """Epsilon that Opacus's accountant gives for ``steps`` Poisson-subsampled Gaussian steps."""
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def dp_accounting_epsilon(sample_rate: float, noise_multiplier: float, steps: int, delta: float,
                          method: str = "pld") -> float:
    """The same quantity from dp_accounting (an implementation independent of Opacus)."""
    import dp_accounting

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)), steps)
    if method == "pld":
        acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    elif method == "rdp":
        acc = dp_accounting.rdp.RdpAccountant()
    else:
        raise ValueError(f"unknown dp_accounting method {method!r}")
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def cross_check(opacus_eps: float, accountant: str, sample_rate: float, noise_multiplier: float,
                steps: int, delta: float) -> AccountantCheck:
    """Compare Opacus's epsilon with dp_accounting's: PLD for ``prv`` (both are numerical privacy-loss
    distributions), RDP for ``rdp``. Missing dp_accounting is reported, not hidden."""
    try:
        pld = dp_accounting_epsilon(sample_rate, noise_multiplier, steps, delta, "pld")
        rdp = dp_accounting_epsilon(sample_rate, noise_multiplier, steps, delta, "rdp")
    except ImportError:
        return AccountantCheck(opacus_eps, accountant, None, None, "none", None, False,
                          "dp_accounting is not installed (pip install dp-accounting); not cross-checked")
    ref_name = "pld" if accountant == "prv" else "rdp"
    ref = pld if ref_name == "pld" else rdp
    rel = abs(opacus_eps - ref) / max(abs(ref), 1e-12)
    flagged = rel > CROSSCHECK_TOLERANCE
    note = (f"Opacus {accountant} and dp_accounting {ref_name} differ by {rel:.1%}" if flagged
            else f"agrees with dp_accounting {ref_name} within {CROSSCHECK_TOLERANCE:.0%}")
    return AccountantCheck(opacus_eps, accountant, pld, rdp, ref_name, rel, flagged, note)


def validate_privacy_target(epsilon: float, delta: float, n_train: int) -> None:
    """The boundary checks a DP run needs before spending any compute."""
    if not (epsilon > 0) or math.isnan(epsilon):
        raise DPAuditError(f"epsilon must be > 0 (use inf for no DP), got {epsilon}")
    if not (0 < delta < 1):
        raise DPAuditError(f"--delta must be in (0, 1), got {delta}")
    if math.isfinite(epsilon) and delta >= 1.0 / n_train:
        raise DPAuditError(f"--delta {delta:g} is not below 1/N = {1.0 / n_train:.3g} for N = {n_train} "
                           f"training records; a delta that large allows leaking a whole record, choose --delta < 1/N")
