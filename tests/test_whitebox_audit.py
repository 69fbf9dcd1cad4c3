"""White-box gradient canaries through the whole audit: verdict, report and gate."""
import math

import pytest
from click.testing import CliRunner

from conftest import small_config
from dpaudit.pipeline import run_audit
from dpaudit.training.whitebox import ScaleNoise

pytestmark = pytest.mark.slow

WB = dict(epsilons=(6.0,), members=300, epochs=6, shadow_models=2, attacks=("loss",), gradient_canaries=400, seed=4)


@pytest.fixture(scope="module")
def honest():
    return run_audit(small_config(**WB), progress=False)[0]


def test_correct_dp_is_conformant(honest):
    m = honest["models"][0]
    wb = m["whitebox"]
    assert wb["conformant"] is True and wb["failed"] == []
    assert wb["m"] == 400 and 150 < wb["included"] < 250
    # the bound never exceeds the accountant's claim, and the estimate brackets it
    assert wb["epsilon_lb"] <= m["training"]["epsilon"]
    lo, hi = wb["empirical_epsilon_ci"]
    assert lo <= m["training"]["epsilon"] <= hi
    # the white-box route has the power black-box evidence lacks: a leak of 2 × the claim would be seen
    assert m["verdict"]["status"] == "consistent", m["verdict"]["text"]
    assert wb["detectable_epsilon"] <= 2 * m["training"]["epsilon"] and wb["detectable_noise_factor"] < 1
    assert m["verdict"]["detectable_source"] == "white-box canaries"
    # loss attack + white-box one-run + white-box Clopper-Pearson + the white-box conformance tests
    assert m["verdict"]["n_bounds"] == 4
    assert m["training"]["gradient_canaries"]["m"] == 400


def test_cut_noise_is_nonconformant_and_fails_the_gate(honest, tmp_path):
    from dpaudit.cli import main
    from dpaudit.io import atomic_write_json
    from dpaudit.report import render

    bad, _ = run_audit(small_config(**WB), progress=False, tamper=ScaleNoise(0.8))
    m = bad["models"][0]
    assert m["training"]["epsilon"] == pytest.approx(honest["models"][0]["training"]["epsilon"])
    assert m["whitebox"]["conformant"] is False and "noise_std" in m["whitebox"]["failed"]
    assert m["verdict"]["status"] == "nonconformant"
    assert "noise_std" in m["verdict"]["rejected_conformance"]
    md = render(bad, "md")["report.md"].decode()
    assert "nonconformant" in md.lower() and "noise_std" in md
    atomic_write_json(tmp_path / "report.json", bad)
    res = CliRunner().invoke(main, ["check", str(tmp_path / "report.json")])
    assert res.exit_code == 1 and "nonconformant" in res.output
    res = CliRunner().invoke(main, ["check", str(tmp_path / "report.json"), "--policy", str(_allow(tmp_path))])
    assert res.exit_code == 0, res.output
    assert math.isfinite(m["whitebox"]["sigma_hat"]) and m["whitebox"]["sigma_hat"] < 0.9 * m["training"]["noise_multiplier"]


def _allow(tmp_path):
    p = tmp_path / "policy.toml"
    p.write_text("allow_nonconformant = true\n")
    return p
