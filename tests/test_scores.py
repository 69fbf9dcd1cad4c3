"""`dpaudit epsilon` on anybody's scores: the one-run bound's fair-coin assumption is tested, not only stated."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dpaudit.cli import main
from dpaudit.core.scores import FAIR_COIN_REFUSE_P, epsilon_from_scores, fair_coin_p_value
from dpaudit.errors import DPAuditError


def _noise(n, n_members, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, bool)
    y[rng.permutation(n)[:n_members]] = True
    return y, rng.normal(size=n)


def _csv(path, y, s):
    path.write_text("is_member,score\n" + "\n".join(f"{int(m)},{float(v)!r}" for m, v in zip(y, s, strict=True)) + "\n")
    return path


def test_one_run_refuses_80_percent_members(tmp_path):
    # the file: pure noise, 1,600 members and 400 non-members, used to print a bound of 1.16
    y, s = _noise(2000, 1600)
    with pytest.raises(DPAuditError) as exc:
        epsilon_from_scores(y, s, method="one-run", delta=1e-5)
    msg = str(exc.value)
    assert "\n" not in msg and "1,600 of 2,000" in msg and "80.0%" in msg
    assert "--method clopper-pearson" in msg and "< 0.001" in msg
    res = CliRunner().invoke(main, ["epsilon", str(_csv(tmp_path / "s.csv", y, s)), "--method", "one-run"])
    assert res.exit_code != 0 and "fair coins" in res.output
    assert len(res.output.strip().splitlines()) == 1
    # the same file is fine for Clopper-Pearson, which needs no coins, and finds nothing in noise
    out = epsilon_from_scores(y, s, method="clopper-pearson", delta=1e-5)
    assert out["epsilon_lower_bound"] == 0.0 and "random" in out["assumptions"]["membership"]


def test_one_run_refuses_55_percent_of_2000():
    # 55% members without signal gave a bound above 0 in 78% of runs; fair coins give such a split with p ~ 7e-6
    y, s = _noise(2000, 1100)
    p = fair_coin_p_value(y)
    assert 5e-6 < p < 1e-5
    with pytest.raises(DPAuditError, match="55.0%"):
        epsilon_from_scores(y, s, method="one-run", delta=1e-5)
    # --guesses and --threshold go through the same check
    with pytest.raises(DPAuditError):
        epsilon_from_scores(y, s, method="one-run", delta=1e-5, guesses=100)
    with pytest.raises(DPAuditError):
        epsilon_from_scores(y, s, method="one-run", delta=1e-5, threshold=0.0)


def test_one_run_fair_file_passes_and_states_its_assumption():
    y, s = _noise(2000, 1000)
    out = epsilon_from_scores(y, s, method="one-run", delta=1e-5)
    json.dumps(out)
    a = out["assumptions"]
    assert "independent fair coins" in a["membership"] and "cannot show" in a["membership"]
    assert a["fair_coin_test"]["p_value"] == pytest.approx(1.0)
    assert a["fair_coin_test"]["refused_below"] == FAIR_COIN_REFUSE_P == 1e-3
    assert out["epsilon_lower_bound"] < 0.5
    # a mild, plausible imbalance passes: 1,040 of 2,000 has p ~ 0.08
    y, s = _noise(2000, 1040)
    assert 0.05 < fair_coin_p_value(y) < 0.1
    assert epsilon_from_scores(y, s, method="one-run", delta=1e-5)["assumptions"]["fair_coin_test"]["p_value"] > 0.05


def test_refusal_level_is_the_tests_false_refusal_rate():
    # honest fair-coin files are refused at most 1 time in 1,000 (the exact test's level): with n = 2,000 the
    # refused counts are k <= lo and k >= n - lo, whose total probability under fair coins is computed exactly
    from scipy.stats import binom

    n = 2000
    lo = max(k for k in range(n // 2 - 120, n // 2) if fair_coin_p_value(np.arange(n) < k) < FAIR_COIN_REFUSE_P)
    assert fair_coin_p_value(np.arange(n) < lo + 1) >= FAIR_COIN_REFUSE_P
    assert fair_coin_p_value(np.arange(n) < n - lo) < FAIR_COIN_REFUSE_P  # two-sided: too few non-members too
    assert 0.5 * FAIR_COIN_REFUSE_P < 2 * binom.cdf(lo, n, 0.5) <= FAIR_COIN_REFUSE_P


@pytest.mark.parametrize("args,msg", [
    (["--confidence", "0.3"], "[0.5, 1)"),
    (["--confidence", "1"], "[0.5, 1)"),
    (["--threshold", "nan"], "finite"),
    (["--threshold", "inf", "--method", "one-run"], "finite"),
])
def test_epsilon_option_errors_are_one_line(tmp_path, args, msg):
    y, s = _noise(200, 100)
    res = CliRunner().invoke(main, ["epsilon", str(_csv(tmp_path / "s.csv", y, s)), *args])
    assert res.exit_code != 0 and msg in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert "Traceback" not in res.output
