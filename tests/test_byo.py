"""Audit your own model: your factory, your npz data of another shape, your trained target, or only outputs."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from dpaudit.cli import main

pytestmark = pytest.mark.slow

USER_MODEL = "tests/_user_models.py:make_net"


@pytest.fixture(scope="module")
def npz_data(tmp_path_factory):
    """scikit-learn's 8x8 digits as a user's npz: channels-last [N, 8, 8, 1], not 28x28."""
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    x = np.rint(d.images * (255 / 16)).astype(np.uint8)[..., None]
    np.savez(path, x=x, y=d.target)
    return path


SMALL = ["--members", "300", "--n-test", "300", "--delta", "1e-4", "--epochs", "8", "--batch-size", "64",
         "--lr", "0.1", "--shadow-models", "2", "--bootstrap", "200", "--jobs", "1", "--seed", "3", "--quiet",
         "--gradient-canaries", "0"]


def _run(args):
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def own_audit(npz_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "audit"
    code, text = _run(["audit", "--dataset", f"npz:{npz_data}", "--model", USER_MODEL, "--epsilons", "inf,4",
                       "--attacks", "loss,rmia,lira", *SMALL, "--save-signals", "--out", str(out)])
    assert code == 0, text
    return out


def test_own_factory_and_npz_data_gate(own_audit):
    rep = json.loads((own_audit / "report.json").read_text())
    assert rep["dataset"]["name"].startswith("npz:") and rep["config"]["model"] == USER_MODEL
    non_dp, dp = rep["models"]
    assert non_dp["training"]["test_accuracy"] > 0.8  # a real fit on 8x8 digits, not 28x28 MNIST
    assert dp["dp"] and dp["training"]["epsilon"] <= 4.0 and dp["accountant_check"]["flagged"] is False
    # check passes or fails as its policy says
    code, text = _run(["check", str(own_audit / "report.json"), "--min-accuracy", "0.3"])
    assert code == 0, text
    code, text = _run(["check", str(own_audit / "report.json"), "--min-accuracy", "0.999"])
    assert code == 1 and "min_accuracy" in text


def test_from_signals_reproduces_the_audit(own_audit, tmp_path):
    a = json.loads((own_audit / "report.json").read_text())
    dp = a["models"][1]
    # the DP model's outputs alone, its claim and the audit's settings give the same numbers
    code, text = _run(["audit", "--from-signals", str(own_audit / "signals" / "dp-eps4.npz"),
                       "--target-epsilon", repr(dp["training"]["epsilon"]), "--delta", "1e-4", "--bootstrap", "200",
                       "--seed", "3", "--attacks", "loss,rmia,lira", "--quiet",
                       "--out", str(tmp_path / "fs")])
    assert code == 0, text
    b = json.loads((tmp_path / "fs" / "report.json").read_text())
    m = b["models"][0]
    assert b["observed_training"] is False and m["training"]["observed"] is False and m["accountant_check"] is None
    for x, y in zip(dp["attacks"], m["attacks"], strict=True):
        assert x["attack"] == y["attack"]
        assert abs(x["metrics"]["auc"] - y["metrics"]["auc"]) <= 1e-9
        assert abs(x["metrics"]["advantage"] - y["metrics"]["advantage"]) <= 1e-9
        # the audit held 2 DP-model verdicts... this report holds 1: compare the bounds at equal confidence
        assert x["epsilon_lb"]["threshold"] == pytest.approx(y["epsilon_lb"]["threshold"], abs=1e-9)
    code, text = _run(["check", str(tmp_path / "fs" / "report.json")])
    assert code == 0, text


def test_trained_target_audited(npz_data, tmp_path):
    code, text = _run(["train", "--dataset", f"npz:{npz_data}", "--model", USER_MODEL, "--epsilon", "inf",
                       "--members", "300", "--n-test", "300", "--epochs", "8", "--batch-size", "64", "--lr", "0.1",
                       "--seed", "5", "--out", str(tmp_path / "m")])
    assert code == 0, text
    meta = json.loads((tmp_path / "m" / "model.pt.json").read_text())
    (tmp_path / "members.txt").write_text("\n".join(str(i) for i in meta["members"]) + "\n")
    code, text = _run(["audit", "--dataset", f"npz:{npz_data}", "--model", USER_MODEL,
                       "--target", str(tmp_path / "m" / "model.pt"), "--target-members", str(tmp_path / "members.txt"),
                       "--attacks", "loss,lira", *SMALL, "--out", str(tmp_path / "t")])
    assert code == 0, text
    rep = json.loads((tmp_path / "t" / "report.json").read_text())
    (m,) = rep["models"]
    assert m["name"] == "non-dp" and m["training"]["observed"] is False
    assert m["training"]["n_train"] == 300 and m["training"]["test_accuracy"] > 0.8
    assert "not observed" in (tmp_path / "t" / "report.md").read_text()
    # training the same target again is refused without --force
    code, text = _run(["train", "--dataset", f"npz:{npz_data}", "--model", USER_MODEL, "--epsilon", "inf",
                       "--members", "300", "--n-test", "300", "--epochs", "1", "--out", str(tmp_path / "m")])
    assert code == 2 and "--force" in text


def test_example_runs_end_to_end(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "own_model.py"
    spec = importlib.util.spec_from_file_location("own_model_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    own, outputs = mod.run(tmp_path)
    assert [m.name for m in own.models] == ["non-dp", "dp-eps4"]
    assert own.models[0].training.test_accuracy > 0.85
    for x, y in zip(own.models[1].attacks, outputs.models[0].attacks, strict=True):
        assert abs(x.metrics.auc - y.metrics.auc) <= 1e-9
    assert (tmp_path / "own" / "report.html").is_file() and (tmp_path / "from-signals" / "report.md").is_file()
    assert math.isfinite(outputs.models[0].verdict.claimed_epsilon)
