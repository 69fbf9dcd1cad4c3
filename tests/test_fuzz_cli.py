"""Bad input to every command that trains or reads user files: exit status 2, one line on stderr, no traceback,
nothing left behind, and all of it before any training (the fast tier runs these). A regression list: each row
is a probe that once misbehaved or could."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from dpaudit.cli import main

SMALL = ["--members", "300", "--n-test", "300", "--quiet"]


def _prepare(tmp):
    (tmp / "a_file").write_text("x")
    (tmp / "dangling").symlink_to(tmp / "nowhere" / "deeper")
    (tmp / "taken").mkdir()
    (tmp / "taken" / "report.json").write_text("{}")
    np.savez(tmp / "obj.npz", x=np.array([object()], dtype=object), y=np.array([1]))
    np.savez(tmp / "nan.npz", x=np.full((20, 8, 8), np.nan, np.float32), y=np.arange(20) % 2)
    np.savez(tmp / "short.npz", x=np.zeros((20, 8, 8), np.uint8), y=np.arange(19) % 2)
    np.savez(tmp / "neg.npz", x=np.zeros((20, 8, 8), np.uint8), y=np.arange(20) - 3)
    np.savez(tmp / "noy.npz", x=np.zeros((20, 8, 8), np.uint8))
    (tmp / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    (tmp / "bom.csv").write_bytes("\ufeffis_member,score\n1,0.5\n0,0.2\n1,0.9\n0,0.1\n".encode())
    rows = "\n".join(f"{int(i < 1600)},{s}" for i, s in enumerate(np.random.default_rng(0).normal(size=2000)))
    (tmp / "skewed.csv").write_text("is_member,score\n" + rows + "\n")
    (tmp / "ok.csv").write_text("is_member,score\n1,0.9\n0,0.1\n1,0.8\n0,0.3\n")
    (tmp / "members.txt").write_text("1\n2\nthree\n")
    (tmp / "good_members.txt").write_text("\n".join(str(i) for i in range(300)) + "\n")
    (tmp / "w.pt").write_bytes(b"not a checkpoint")
    # a record naming code to import as its architecture: never imported (here, a file that would write a marker)
    _model_with_bad_test_idx(tmp / "codeidx", model=f"{tmp}/evil.py:make", test_idx=(0,))
    (tmp / "evil.py").write_text(f"open({str(tmp / 'PWNED')!r}, 'w').write('x')\ndef make(s, c):\n    raise SystemExit\n")
    sig = {"logits": np.zeros((3, 10, 4), np.float32), "labels": np.arange(10) % 4,
           "membership": np.tile(np.arange(10) % 2, (3, 1))}
    np.savez(tmp / "sig_nolabels.npz", **{k: v for k, v in sig.items() if k != "labels"})
    np.savez(tmp / "sig_badmem.npz", **{**sig, "membership": np.ones((3, 10))})
    np.savez(tmp / "sig_extra.npz", **sig, secret=np.zeros(1))
    np.savez(tmp / "sig_ok.npz", **sig)
    import shutil

    shutil.copy(_template() / "bomb.pt", tmp / "bomb.pt")
    shutil.copytree(_template() / "badidx", tmp / "badidx")


_TEMPLATE: list = []


def _template():
    """Files that are slow to make and hold no per-test path, made once per session and copied into each row's
    folder: a zip bomb and a model record with a bad test_idx."""
    import tempfile
    import zipfile
    from pathlib import Path

    if not _TEMPLATE:
        import atexit
        import shutil

        root = Path(tempfile.mkdtemp(prefix="dpaudit-fuzz-"))
        atexit.register(shutil.rmtree, root, True)
        # a zip bomb in torch's checkpoint format: 80 MB of zeros that pack into ~80 KB
        with zipfile.ZipFile(root / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as zf:
            with zf.open("archive/data/0", "w") as f:
                chunk = bytes(1 << 20)
                for _ in range(80):
                    f.write(chunk)
        _model_with_bad_test_idx(root / "badidx")
        _TEMPLATE.append(root)
    return _TEMPLATE[0]


def _model_with_bad_test_idx(folder, model="simple-cnn", test_idx=(0, 1, 10**9)):
    """A real (untrained) model saved by dpaudit whose record lists test indices past the data's end (or names
    a factory in a file as its architecture)."""
    from dataclasses import replace

    from dpaudit.models import build_model
    from dpaudit.train import TrainConfig, TrainedModel, TrainingRecord, save_model

    rec = {f: None for f in TrainingRecord.__dataclass_fields__}
    rec.update(model="simple-cnn", dp=False, epsilon_per_epoch=[], poisson_sampling_checked=False, n_train=1,
               dpaudit_version="x")
    trained = TrainedModel(build_model("simple-cnn"), TrainingRecord(**rec), replace(TrainConfig(), model=model))
    save_model(trained, folder / "model.pt", extra={"n_classes": 10, "dataset": {"name": "mnist-5k"},
                                                    "test_idx": list(test_idx)})


ROWS = [
    # audit: numbers in range, phrased with the option passed
    ("audit", ["--seed", "-1"], "--seed"),
    ("audit", ["--seed", str(2**40)], "--seed"),
    ("audit", ["--bootstrap", "0"], "--bootstrap"),
    ("audit", ["--n-test", "-5"], "--n-test"),
    ("audit", ["--n-test", "0"], "--n-test"),
    ("audit", ["--members", "1"], "--members"),
    ("audit", ["--jobs", "-3"], "--jobs"),
    ("audit", ["--epochs", "0"], "--epochs"),
    ("audit", ["--batch-size", "0"], "--batch-size"),
    ("audit", ["--lr", "0"], "--lr"),
    ("audit", ["--lr", "nan"], "--lr"),
    ("audit", ["--max-grad-norm", "-1"], "--max-grad-norm"),
    ("audit", ["--momentum", "1.5"], "--momentum"),
    ("audit", ["--confidence", "0.1"], "--confidence"),
    ("audit", ["--confidence", "1"], "--confidence"),
    ("audit", ["--delta", "0"], "--delta"),
    ("audit", ["--delta", "0.5"], "below 1/N"),
    ("audit", ["--epsilons", "1e400"], "overflows"),
    ("audit", ["--epsilons", "8,8.0"], "twice"),
    ("audit", ["--epsilons", "1e-300"], "below 0.001"),
    ("audit", ["--epsilons", "5000"], "above 100"),
    ("audit", ["--epsilons", "inf,-1"], "must be > 0"),
    ("audit", ["--epsilons", ","], "empty"),
    ("audit", ["--attacks", ""], "without an attack"),
    ("audit", ["--attacks", "loss,loss"], "twice"),
    ("audit", ["--attacks", "nope"], "unknown attack"),
    ("audit", ["--attacks", "shadow", "--shadow-models", "1"], "--shadow-models >= 2"),
    ("audit", ["--shadow-models", "0"], "--shadow-models"),
    ("audit", ["--canaries", "-1"], "--canaries"),
    ("audit", ["--gradient-canaries", "-1"], "--gradient-canaries"),
    ("audit", ["--canaries", "1"], "at least 2"),
    ("audit", ["--gradient-canaries", "10", "--epsilons", "inf"], "finite epsilon"),
    ("audit", ["--gradient-canaries", "10", "--grad-sample-mode", "ghost"], "ghost"),
    ("audit", ["--format", "json,pdf"], "--format"),
    ("audit", ["--executor", "nope"], "--executor"),
    ("audit", ["--out", "{tmp}/a_file"], "is a file"),
    ("audit", ["--out", "{tmp}/dangling"], "dangling"),
    ("audit", ["--out", "{tmp}/a_file/sub"], "is a file"),
    ("audit", ["--out", "{tmp}/taken"], "--force"),
    ("audit", ["--cache-dir", "{tmp}/a_file"], "--cache-dir"),
    ("audit", ["--members", "4000"], "needs"),
    ("audit", ["--members", "200000"], "needs"),  # not blamed on δ, though δ = 1e-5 > 1/200,000
    ("audit", ["--members", "100"], "recipe's batch size"),
    ("audit", ["--members", "100", "--batch-size", "128"], "--batch-size 128"),
    ("audit", ["--dataset", "nope"], "unknown dataset"),
    ("audit", ["--dataset", "npz:{tmp}/missing.npz"], "not found"),
    ("audit", ["--dataset", "npz:{tmp}/obj.npz"], "object"),
    ("audit", ["--dataset", "npz:{tmp}/nan.npz"], "NaN"),
    ("audit", ["--dataset", "npz:{tmp}/short.npz"], "20"),
    ("audit", ["--dataset", "npz:{tmp}/neg.npz"], "label"),
    ("audit", ["--dataset", "npz:{tmp}/noy.npz"], "y"),
    ("audit", ["--dataset", "npz:{tmp}/bad.npz"], "npz"),
    ("audit", ["--dataset", "imagefolder:{tmp}/nowhere"], "imagefolder"),
    ("audit", ["--model", "no_such_pkg.mod:make"], "no_such_pkg"),
    ("audit", ["--model", "tests/_user_models.py:make_bn_net"], "GroupNorm"),
    ("audit", ["--model", "tests/_user_models.py:missing"], "missing"),
    ("audit", ["--target", "{tmp}/w.pt"], "--target-members"),
    ("audit", ["--target", "{tmp}/w.pt", "--target-members", "{tmp}/members.txt"], "whole numbers"),
    ("audit", ["--target", "{tmp}/none.pt", "--target-members", "{tmp}/good_members.txt"], "not found"),
    ("audit", ["--target", "{tmp}/w.pt", "--target-members", "{tmp}/good_members.txt"], "weights-only"),
    ("audit", ["--target", "{tmp}/bomb.pt", "--target-members", "{tmp}/good_members.txt"], "zip bomb"),
    ("audit", ["--from-signals", "{tmp}/missing.npz"], "not found"),
    ("audit", ["--from-signals", "{tmp}/obj.npz"], "object"),
    ("audit", ["--from-signals", "{tmp}/sig_nolabels.npz"], "labels"),
    ("audit", ["--from-signals", "{tmp}/sig_badmem.npz"], "members and non-members"),
    ("audit", ["--from-signals", "{tmp}/sig_extra.npz"], "unknown arrays"),
    ("audit", ["--target-epsilon", "abc", "--from-signals", "{tmp}/sig_extra.npz"], "not a number"),
    # train
    ("train", ["--seed", "-1", "--out", "{tmp}/m"], "--seed"),
    ("train", ["--seed", str(2**40), "--out", "{tmp}/m"], "--seed"),
    ("train", ["--epsilon", "1e-300", "--out", "{tmp}/m"], "below 0.001"),
    ("train", ["--epsilon", "0", "--out", "{tmp}/m"], "> 0"),
    ("train", ["--out", "{tmp}/a_file"], "is a file"),
    ("train", ["--out", "{tmp}/taken"], "--force"),
    ("audit", ["--target-epsilon", "4"], "--target-epsilon"),
    ("audit", ["--ray-address", "127.0.0.1:1"], "--executor ray"),
    ("audit", ["--from-signals", "{tmp}/sig_extra.npz", "--target-epsilon", "1,2"], "one"),
    ("audit", ["--gradient-canaries", "10", "--from-signals", "{tmp}/sig_ok.npz"], "--gradient-canaries"),
    ("inspect", ["{tmp}/codeidx/model.pt"], "never imports code"),
    # epsilon (anyone's scores)
    ("epsilon", ["{tmp}/missing.csv"], "not found"),
    ("epsilon", ["{tmp}/ok.csv", "--confidence", "0.1"], "--confidence"),
    ("epsilon", ["{tmp}/ok.csv", "--threshold", "nan"], "--threshold"),
    ("epsilon", ["{tmp}/skewed.csv", "--method", "one-run", "--guesses", "100000"], "--guesses must be in"),
    ("epsilon", ["{tmp}/bom.csv", "--delta", "1.5"], "--delta"),
    # inspect / report
    ("inspect", ["{tmp}/w.pt"], "w.pt.json is missing"),
    ("inspect", ["{tmp}/badidx/model.pt"], "test_idx"),
    ("report", ["{tmp}/a_file"], "JSON"),
    ("report", ["{tmp}/missing.json"], "not found"),
]


@pytest.mark.parametrize("cmd,args,expect", ROWS, ids=[f"{c} {' '.join(a)[:40]}" for c, a, _ in ROWS])
def test_bad_input_row(tmp_path, monkeypatch, cmd, args, expect):
    import os
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # model specs are relative to the repository
    _prepare(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    extra = SMALL + ["--out", str(tmp_path / "out")] if cmd == "audit" and "--out" not in args else []
    if cmd == "train":
        extra = ["--members", "300", "--n-test", "300"]
    res = CliRunner().invoke(main, [cmd, *extra, *args])  # the row's own options win (click: last one wins)
    err = res.stderr
    assert res.exit_code == 2, (res.exit_code, res.output, err)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output + err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert expect.lower() in lines[0].lower(), lines[0]
    after = {p for p in tmp_path.rglob("*")}
    assert after == before, sorted(map(str, after - before))
    assert os.listdir(tmp_path / "taken") == ["report.json"]


def test_row_count():
    assert len(ROWS) >= 60
