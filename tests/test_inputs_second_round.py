"""Issue 25, second probe round: the resource guards (dpaudit.limits), the probes whose row says they must WORK,
defaults that drop what cannot run, workers that die, and lira-online's centre chosen on the references.
The bad-input rows themselves are in tests/test_fuzz_cli.py."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dpaudit.cli import main
from dpaudit.errors import DPAuditError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--members", "200", "--n-test", "200", "--batch-size", "64", "--epochs", "1", "--shadow-models", "1",
        "--attacks", "loss", "--quiet", "--jobs", "1"]


def _template():
    from test_fuzz_cli import _template as make

    return make()


# ---- dpaudit.limits ---------------------------------------------------------------------------------

def test_npz_headers_are_checked_before_anything_is_allocated(tmp_path):
    from dpaudit.limits import check_npz, declared_bytes

    ok = tmp_path / "ok.npz"
    np.savez(ok, x=np.zeros((50, 8, 8), np.uint8), y=np.arange(50))
    check_npz(ok, "t")  # a real archive passes
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(forged, "w") as zf, zf.open("x.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (1 << 40,)})
    assert forged.stat().st_size < 400
    with pytest.raises(DPAuditError, match="declares shape"):
        check_npz(forged, "t")
    # Python integers: a header's product cannot overflow into a small number
    assert declared_bytes((1 << 40, 1 << 40), np.dtype("<f8")) == 8 << 80


def test_npz_expansion_limit_is_the_checkpoints(tmp_path):
    from dpaudit.limits import MAX_EXPANSION, check_npz
    from dpaudit.training.train import MAX_EXPANSION as CHECKPOINT_EXPANSION

    assert MAX_EXPANSION == CHECKPOINT_EXPANSION
    def zeros_npz(path, mib):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, zf.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (mib << 20,)})
            for _ in range(mib):
                f.write(bytes(1 << 20))

    small = tmp_path / "zeros_ok.npz"  # 30 MiB of zeros: under the 50 MiB any archive may unpack to
    zeros_npz(small, 30)
    check_npz(small, "t")
    assert np.load(small)["x"].size == 30 << 20
    bomb = tmp_path / "bomb.npz"
    zeros_npz(bomb, 60)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(DPAuditError, match="zip bomb"):
        check_npz(bomb, "t")


def test_plain_npy_header_and_index_overflow(tmp_path):
    from dpaudit.limits import check_npy
    from dpaudit.sources.external import read_indices

    good = tmp_path / "m.npy"
    np.save(good, np.arange(10))
    check_npy(good, "--target-members")
    assert read_indices(good, 100).tolist() == list(range(10))
    forged = tmp_path / "forged.npy"
    with open(forged, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (1 << 42,)})
    with pytest.raises(DPAuditError, match="declares"):
        read_indices(forged, 100)
    big = tmp_path / "big.txt"
    big.write_text("1\n99999999999999999999999\n")
    with pytest.raises(DPAuditError, match="out of range"):
        read_indices(big, 100)


def test_image_bomb_is_one_line(tmp_path):
    from PIL import Image
    from test_fuzz_cli import _png_header

    from dpaudit.limits import open_image

    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header(20000, 20000))
    assert p.stat().st_size < 100
    with pytest.raises(DPAuditError, match="decompression bomb"):
        with open_image(p, "imagefolder:x"):
            pass
    # between PIL's warning and its error (1-2x MAX_IMAGE_PIXELS) is refused too, not decoded
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    p.write_bytes(_png_header(side, side))
    with pytest.raises(DPAuditError, match="decompression bomb"):
        with open_image(p, "imagefolder:x"):
            pass
    p.write_bytes(_png_header(8, 8))
    with open_image(p, "imagefolder:x") as im:
        assert im.size == (8, 8)


def test_gradient_canary_memory_grows_with_the_canaries():
    from dpaudit.config import AuditConfig
    from dpaudit.limits import check_gradient_canary_memory, gradient_canary_bytes, memory_budget

    small = AuditConfig(gradient_canaries=1000)
    assert 0 < gradient_canary_bytes(small) < memory_budget()
    check_gradient_canary_memory(small)
    assert gradient_canary_bytes(AuditConfig(gradient_canaries=10_000)) > 10 * gradient_canary_bytes(small)
    assert gradient_canary_bytes(AuditConfig(gradient_canaries=1000, epsilons=(float("inf"),))) == 0
    with pytest.raises(DPAuditError, match="memory"):
        check_gradient_canary_memory(AuditConfig(gradient_canaries=1_000_000))


def test_a_full_disk_in_a_job_is_one_line_naming_the_model():
    from dpaudit.training.executors.local import job_error

    err = job_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/abc.pt"), "dp-eps8 model 3")
    assert isinstance(err, DPAuditError)
    assert "dp-eps8 model 3" in str(err) and "No space left" in str(err) and "\n" not in str(err)
    assert job_error(ValueError("a bug"), "m") is None  # a bug stays a traceback


def test_ray_addresses_are_parsed_before_ray_starts():
    pytest.importorskip("ray")
    from dpaudit.training.executors.ray_cluster import check_reachable, parse_address

    assert parse_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert parse_address("ray://head.example:10001") == ("head.example", 10001)
    assert parse_address("[::1]:6379") == ("::1", 6379)
    assert parse_address("auto") is None
    for bad in ("not a host", "host", "host:0", "host:70000", ":6379", "http://x:1"):
        with pytest.raises(DPAuditError, match="HOST:PORT"):
            parse_address(bad)
    t = time.perf_counter()
    with pytest.raises(DPAuditError, match="cannot reach"):
        check_reachable("127.0.0.1:1")
    assert time.perf_counter() - t < 10


# ---- probes that must work ----------------------------------------------------------------------------

@pytest.mark.slow  # over a second on 2 cores: the fast tier stays under a minute
def test_signals_without_population_run_and_non_dp_reports_render(tmp_path):
    """The README's optional arrays are optional: no population (RMIA dropped from the DEFAULT list, with one
    note), no --target-epsilon (a non-DP report), and `report --format md|html` renders it."""
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["audit", "--from-signals", str(_template() / "sig_nopop.npz"), "--out", str(out),
                                    "--quiet", "--shadow-classifier", "logreg", "--bootstrap", "100", "--format", "json"])
    assert res.exit_code == 0, (res.output, res.stderr)
    notes = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(notes) == 1 and "rmia" in notes[0] and "left out" in notes[0], res.stderr
    assert (out / "report.json").is_file()
    for fmt in ("md", "html"):
        res = CliRunner().invoke(main, ["report", str(out / "report.json"), "--format", fmt])
        assert res.exit_code == 0, (res.output, res.stderr)
        assert "test accuracy not measured" in (out / f"report.{fmt}").read_text()
    # an attack the user names is refused instead of dropped
    res = CliRunner().invoke(main, ["audit", "--from-signals", str(_template() / "sig_nopop.npz"), "--out",
                                    str(tmp_path / "o2"), "--quiet", "--attacks", "loss,rmia"])
    assert res.exit_code == 2 and "population" in res.stderr


@pytest.mark.slow  # over half a second on 2 cores: the fast tier stays under a minute
def test_audit_outputs_readme_example_runs_and_refuses_nan_and_complex():
    import dpaudit

    z = np.load(_template() / "sig_nopop.npz")
    rep = dpaudit.audit_outputs(z["logits"], z["labels"], z["membership"], epsilon=4.0, delta=1e-5)
    assert [a.attack for a in rep.models[0].attacks] == ["loss", "shadow", "lira"]
    assert rep.models[0].dp and rep.models[0].target_epsilon == 4.0
    with pytest.raises(DPAuditError, match="epsilon"):
        dpaudit.audit_outputs(z["logits"], z["labels"], z["membership"], epsilon=float("nan"), delta=1e-5)
    with pytest.raises(DPAuditError, match="real numbers"):
        dpaudit.audit_outputs(z["logits"] * (1 + 1j), z["labels"], z["membership"], epsilon=4.0)


def test_default_attacks_drop_with_one_note_before_any_work(tmp_path):
    res = CliRunner().invoke(main, ["audit", "--shadow-models", "2", "--dataset", "nope", "--out", str(tmp_path / "o"),
                                    "--quiet"])
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 2, res.stderr
    assert "rmia-online" in lines[0] and "left out" in lines[0] and "unknown dataset" in lines[1]


def test_policy_with_a_bom_is_read():
    res = CliRunner().invoke(main, ["check", str(_template() / "report.json"), "--policy",
                                    str(_template() / "bom.toml")])
    assert res.exit_code in (0, 1), (res.output, res.stderr)
    assert "not valid TOML" not in res.stderr


@pytest.mark.slow
def test_a_program_on_standard_input_fails_instead_of_hanging(tmp_path):
    """Spawned workers re-run the main program from its file; one read from stdin has none, and spawn would
    block for ever writing to a child that died. One line instead, within seconds."""
    script = ("import math, dpaudit\n"
              "dpaudit.audit(members=200, n_test=200, batch_size=64, epochs=1, shadow_models=1, attacks=('loss',),"
              " epsilons=(math.inf,), jobs=2, progress=False)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert res.returncode != 0 and "standard input" in res.stderr, res.stderr[-2000:]
    assert time.perf_counter() - t < 120


# ---- lira-online: mean or median, chosen on the references -----------------------------------------

def _pairs(rng, k, n):
    """k references in pairs splitting the records (as dpaudit draws them): each record IN of k/2, OUT of k/2."""
    rin = np.zeros((k, n), bool)
    for j in range(0, k, 2):
        rin[j, rng.permutation(n)[: n // 2]] = True
        rin[j + 1] = ~rin[j]
    return rin


def test_median_centre_resists_an_outlying_reference():
    from dpaudit.attacks.lira import lira_scores
    from dpaudit.attacks.metrics import auc

    rng = np.random.default_rng(0)
    k, n = 8, 400
    rin = _pairs(rng, k, n)
    member = rng.random(n) < 0.5
    phi_refs = rng.normal(size=(k, n)) + 1.0 * rin
    phi_refs[0] += 30.0 * ~rin[0]  # one diverged reference: its OUT phi far off
    phi_t = rng.normal(size=n) + 1.0 * member
    a_mean = auc(lira_scores(phi_t, phi_refs, rin, online=True, centre="mean"), member)
    a_median = auc(lira_scores(phi_t, phi_refs, rin, online=True, centre="median"), member)
    assert a_median > a_mean + 0.02, (a_mean, a_median)
    # without the outlier the two agree closely
    phi_refs[0] -= 30.0 * ~rin[0]
    a_mean = auc(lira_scores(phi_t, phi_refs, rin, online=True, centre="mean"), member)
    a_median = auc(lira_scores(phi_t, phi_refs, rin, online=True, centre="median"), member)
    assert abs(a_mean - a_median) < 0.05
    with pytest.raises(ValueError, match="centre"):
        lira_scores(phi_t, phi_refs, rin, online=True, centre="mode")


def test_lira_online_centre_is_chosen_on_the_references_only():
    """The target's row never enters the choice: two inputs that differ only in the target's logits choose the
    same centre and queries; the choice is one of the offered centres and is reported."""
    from dpaudit.core.attack_registry import AttackInput, run_attack
    from dpaudit.core.signals import Signals

    rng = np.random.default_rng(1)
    k, n, c = 8, 300, 4
    rin = _pairs(rng, k, n)
    groups = np.repeat(np.arange(k // 2), 2)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(k + 1, n, c))
    logits[1:, np.arange(n), labels] += 1.5 * rin
    logits[1, np.arange(n), labels] += 8.0 * ~rin[0]  # an outlying reference
    chosen = []
    for seed in (2, 3):
        lg = logits.copy()
        lg[0] = np.random.default_rng(seed).normal(size=(n, c)) * 3
        res = run_attack("lira-online", AttackInput(pool=Signals(logits=lg, labels=labels), ref_in=rin,
                                                    ref_groups=groups))
        assert res.details["centre"] in res.details["centres_offered"] == ["mean", "median"]
        assert res.details["centre"] in res.description
        chosen.append((res.details["centre"], res.details["queries"]))
    assert chosen[0] == chosen[1]
    offline = run_attack("lira", AttackInput(pool=Signals(logits=logits, labels=labels), ref_in=rin, ref_groups=groups))
    assert offline.details["centre"] == "mean" and offline.details["centres_offered"] == ["mean"]


# ---- slow: need training -------------------------------------------------------------------------------

@pytest.mark.slow
def test_one_gradient_canary_writes_the_report(tmp_path):
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["audit", *TINY, "--epsilons", "8", "--gradient-canaries", "1", "--out", str(out)])
    assert res.exit_code == 0, (res.output, res.stderr)
    assert {"report.json", "report.md", "report.html"} <= {p.name for p in out.iterdir()}


def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dpaudit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _wait_for_training(proc, folder: Path, timeout=120):
    """Until the process is past its imports and data (its first child, or simply some seconds of CPU)."""
    t = time.perf_counter()
    while time.perf_counter() - t < timeout and proc.poll() is None:
        time.sleep(0.5)
        if time.perf_counter() - t > 8:
            return


@pytest.mark.slow
def test_sigterm_with_one_job_prints_a_line(tmp_path):
    proc = _cli(["audit", *TINY, "--epochs", "30", "--epsilons", "inf,8", "--out", str(tmp_path / "o")])
    _wait_for_training(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "terminated" in lines[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_killed_worker_is_one_line_naming_the_model(tmp_path):
    proc = _cli(["audit", *TINY, "--jobs", "2", "--epochs", "30", "--epsilons", "inf,8", "--out", str(tmp_path / "o")])
    deadline = time.perf_counter() + 120
    workers = []
    while time.perf_counter() < deadline and not workers:
        time.sleep(1)
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(p) for p in kids if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    assert workers, "no worker process started"
    time.sleep(3)
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
    out, err = proc.communicate(timeout=120)
    lines = [x for x in err.splitlines() if x.strip()]
    assert proc.returncode == 2, err[-2000:]
    assert len(lines) == 1 and "worker process died" in lines[0] and "model" in lines[0] and "SIGKILL" in lines[0], err


@pytest.mark.slow
def test_two_concurrent_trains_without_force_do_not_replace_each_other(tmp_path):
    args = ["train", "--members", "200", "--n-test", "200", "--batch-size", "64", "--epochs", "2", "--epsilon", "inf",
            "--out", str(tmp_path / "m")]
    procs = [_cli(args), _cli(args)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    assert any("another run" in err for rc, err in results if rc == 2)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.pt", "model.pt.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_api_default_attacks_drop_with_a_warning():
    from dpaudit.api import audit  # (dpaudit.pipeline is the submodule once the CLI has imported it)

    with pytest.warns(UserWarning, match="rmia-online"), pytest.raises(DPAuditError, match="unknown dataset"):
        audit(shadow_models=2, dataset="nope", progress=False)
    with pytest.raises(DPAuditError, match="--shadow-models >= 4"):  # a list the caller chose is refused
        audit(shadow_models=2, attacks=("rmia-online",), dataset="nope", progress=False)
