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
    (tmp / "huge_index.txt").write_text("1\n2\n99999999999999999999999\n")
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
    # tabular records: a good CSV and one per way a CSV goes wrong
    good = ["a,b,c,y"] + [f"{i},{i * 0.5},{'red' if i % 3 else 'blue'},{i % 2}" for i in range(40)]
    (tmp / "t_good.csv").write_text("\n".join(good) + "\n")
    (tmp / "t_ragged.csv").write_text("\n".join(good[:5] + [good[5] + ",7"] + good[6:]) + "\n")
    (tmp / "t_nan.csv").write_text("\n".join(good[:3] + ["2,NaN,red,0"] + good[4:]) + "\n")
    (tmp / "t_str.csv").write_text("\n".join(good[:3] + ["2,two,red,0"] + good[4:]) + "\n")
    (tmp / "t_mixed.csv").write_text("\n".join(["a,b,y"] + [f"{i},{i if i % 2 else 'v' + str(i)},{i % 2}"
                                                            for i in range(40)]) + "\n")
    (tmp / "t_oneclass.csv").write_text("\n".join(["a,b,y"] + [f"{i},{i * 2},yes" for i in range(40)]) + "\n")
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
        _second_round(root)
        _TEMPLATE.append(root)
    return _TEMPLATE[0]


def _signals(m=3, n=40, c=4, seed=0, **extra):
    """Real-looking outputs of m models on n records (row 0 the target), each on a random half."""
    rng = np.random.default_rng(seed)
    mem = np.zeros((m, n), bool)
    for i in range(m):
        mem[i, rng.permutation(n)[: n // 2]] = True
    return {"logits": rng.normal(size=(m, n, c)).astype(np.float32), "labels": rng.integers(0, c, n),
            "membership": mem, **extra}


def _huge_header(fp, shape=(1 << 20, 1 << 20, 450), dtype="<f8"):
    """Only the .npy header of an array of 3.6 TiB: a 200-byte file that np.load would try to allocate."""
    np.lib.format.write_array_header_1_0(fp, {"descr": dtype, "fortran_order": False, "shape": shape})


def _png_header(width, height):
    """A PNG of a few dozen bytes whose header claims width x height pixels (PIL reads the size on open)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _second_round(root):
    """Issue 25's probes: forged headers, bombs, damaged signals, a NaN target, an oversized record, a report."""
    import zipfile

    import torch

    from dpaudit.io import atomic_write_json
    from dpaudit.pipeline import audit_signals
    from dpaudit.training.models import build_model

    for name, keys in (("huge_sig.npz", ("logits", "labels", "membership")), ("huge_xy.npz", ("x", "y"))):
        with zipfile.ZipFile(root / name, "w") as zf:
            for k in keys:
                with zf.open(f"{k}.npy", "w") as f:
                    _huge_header(f)
    with open(root / "huge.npy", "wb") as f:
        _huge_header(f, shape=(1 << 42,), dtype="<i8")
    with zipfile.ZipFile(root / "zipbomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:  # 80 MB of zeros in ~80 KB
        with zf.open("x.npy", "w") as f:
            _huge_header(f, shape=(80 << 20,), dtype="|u1")
            chunk = bytes(1 << 20)
            for _ in range(80):
                f.write(chunk)
    for cls, (w, h) in (("a", (20000, 20000)), ("b", (8, 8))):
        (root / "pngbomb" / cls).mkdir(parents=True)
        (root / "pngbomb" / cls / "img.png").write_bytes(_png_header(w, h))
    sig = _signals()
    np.savez(root / "sig_ok.npz", **sig)
    np.savez(root / "sig_emptycanary.npz", **sig, canary_scores=np.zeros(0), canary_in=np.zeros(0, bool))
    np.savez(root / "sig_noqueries.npz", **sig, pool_query_logits=np.zeros((3, 40, 0, 4), np.float32))
    np.savez(root / "sig_strindex.npz", **sig, record_index=np.array([f"r{i}" for i in range(40)]))
    np.savez(root / "sig_floatindex.npz", **sig, record_index=np.arange(40) + 0.5)
    np.savez(root / "sig_dupindex.npz", **sig, record_index=np.arange(40) // 2)
    np.savez(root / "sig_complex.npz", **{**sig, "logits": sig["logits"] * (1 + 1j)})
    one = sig["membership"].copy()
    one[0] = False
    one[0, 0] = True
    np.savez(root / "sig_onemember.npz", **{**sig, "membership": one})
    np.save(root / "plain.npy", sig["logits"])
    np.savez(root / "sig_nopop.npz", **_signals(m=5, n=200))
    net = build_model("simple-cnn")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["net.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, root / "nan.pt")
    # a 6 KB record claiming inputs of 4096 x 4096 and 100,000 classes: building it would take gigabytes
    _model_with_bad_test_idx(root / "bigrec", extra={"input_shape": [1, 4096, 4096], "n_classes": 100_000})
    from dpaudit.config import AuditConfig

    report, _ = audit_signals(root / "sig_ok.npz", AuditConfig(attacks=("loss",)), None, command="fuzz template")
    atomic_write_json(root / "report.json", report)
    report["config"].update(dataset=f"npz:{root / 'huge_xy.npz'}", members=300, n_test=300)
    atomic_write_json(root / "report_huge.json", report)
    (root / "bom.toml").write_bytes("\ufeffmax_auc_dp = 0.9\n".encode())


def _model_with_bad_test_idx(folder, model="simple-cnn", test_idx=(0, 1, 10**9), extra=None):
    """A real (untrained) model saved by dpaudit whose record lists test indices past the data's end (or names
    a factory in a file as its architecture)."""
    from dataclasses import replace

    from dpaudit.training.models import build_model
    from dpaudit.training.train import TrainConfig, TrainedModel, TrainingRecord, save_model

    rec = {f: None for f in TrainingRecord.__dataclass_fields__}
    rec.update(model="simple-cnn", dp=False, epsilon_per_epoch=[], poisson_sampling_checked=False, n_train=1,
               dpaudit_version="x")
    trained = TrainedModel(build_model("simple-cnn"), TrainingRecord(**rec), replace(TrainConfig(), model=model))
    save_model(trained, folder / "model.pt", extra={"n_classes": 10, "dataset": {"name": "mnist-5k"},
                                                    "test_idx": list(test_idx), **(extra or {})})


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
    # tabular records
    ("audit", ["--dataset", "csv:{tmp}/t_ragged.csv", "--label-column", "y"], "ragged"),
    ("audit", ["--dataset", "csv:{tmp}/t_nan.csv", "--label-column", "y"], "missing/NaN"),
    ("audit", ["--dataset", "csv:{tmp}/t_good.csv", "--label-column", "label"], "no column named 'label'"),
    ("audit", ["--dataset", "csv:{tmp}/t_str.csv", "--label-column", "y"], "holds the string 'two'"),
    ("audit", ["--dataset", "csv:{tmp}/t_mixed.csv", "--label-column", "y"], "mixes numbers and strings"),
    ("audit", ["--dataset", "csv:{tmp}/t_oneclass.csv", "--label-column", "y"], "one class"),
    ("audit", ["--dataset", "csv:{tmp}/t_good.csv"], "--label-column"),
    ("audit", ["--dataset", "csv:{tmp}/missing.csv", "--label-column", "y"], "not found"),
    ("audit", ["--dataset", "csv:{tmp}/t_good.csv", "--label-column", "y", "--categorical", "z"], "'z'"),
    ("audit", ["--label-column", "y"], "csv:PATH"),
    ("audit", ["--categorical", "a"], "csv:PATH"),
    ("audit", ["--hidden", "64,big"], "--hidden"),
    ("audit", ["--hidden", "64", "--model", "simple-cnn"], "--hidden"),
    ("audit", ["--dataset", "sklearn-breast-cancer", "--model", "simple-cnn"], "image records"),
    ("audit", ["--dataset", "sklearn-breast-cancer", "--members", "300"], "needs"),
    ("train", ["--dataset", "csv:{tmp}/t_nan.csv", "--label-column", "y", "--out", "{tmp}/m"], "missing/NaN"),
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
    # ---- second round (issue 25). {T}: files made once per session (_second_round)
    # resources: declared sizes and expansion checked before anything is unpacked or built
    ("audit", ["--from-signals", "{T}/huge_sig.npz"], "declares"),
    ("audit", ["--dataset", "npz:{T}/huge_xy.npz"], "declares"),
    ("audit", ["--target", "{T}/nan.pt", "--target-members", "{T}/huge.npy"], "declares"),
    ("attack", ["{T}/report_huge.json", "--cache-dir", "{tmp}/c", "--out", "{tmp}/o2", "--attacks", "loss"],
     "declares"),
    ("audit", ["--from-signals", "{T}/zipbomb.npz"], "zip bomb"),
    ("audit", ["--dataset", "npz:{T}/zipbomb.npz"], "zip bomb"),
    ("audit", ["--dataset", "imagefolder:{T}/pngbomb"], "decompression bomb"),
    ("inspect", ["{T}/bigrec/model.pt"], "weights"),
    ("audit", ["--gradient-canaries", "1000000", "--delta", "1e-7"], "memory"),
    # signals: damaged or odd arrays
    ("audit", ["--from-signals", "{T}/sig_emptycanary.npz"], "non-empty"),
    ("audit", ["--from-signals", "{T}/sig_noqueries.npz"], "queries >= 1"),
    ("audit", ["--from-signals", "{T}/sig_strindex.npz"], "record_index"),
    ("audit", ["--from-signals", "{T}/sig_floatindex.npz"], "record_index"),
    ("audit", ["--from-signals", "{T}/sig_dupindex.npz"], "repeats"),
    ("audit", ["--from-signals", "{T}/sig_complex.npz"], "real numbers"),
    ("audit", ["--from-signals", "{T}/sig_onemember.npz"], "at least 10"),
    ("audit", ["--from-signals", "{T}/plain.npy"], ".npy"),
    # a target: indices beyond int64, NaN weights (before any reference trains)
    ("audit", ["--target", "{T}/nan.pt", "--target-members", "{tmp}/huge_index.txt"], "out of range"),
    ("audit", ["--target", "{T}/nan.pt", "--target-members", "{tmp}/good_members.txt"], "NaN"),
    # factories that would fail mid-training
    ("audit", ["--model", "tests/_user_models.py:make_float64"], "float64"),
    ("audit", ["--model", "tests/_user_models.py:make_half"], "float16"),
    ("audit", ["--model", "tests/_user_models.py:make_frozen"], "frozen"),
    ("audit", ["--model", "tests/_user_models.py:make_no_params"], "no parameters"),
    ("audit", ["--model", "tests/_user_models.py:make_train_shape"], "training mode"),
    ("audit", ["--model", "tests/_user_models.py:make_exit"], "SystemExit"),
    ("audit", ["--model", "tests/_user_models.py:make_bn1d", "--members", "193", "--batch-size", "64",
               "--epsilons", "inf", "--jobs", "1"], "batch of 1"),
    # Ray: a malformed or unreachable address fails in seconds
    ("audit", ["--executor", "ray", "--ray-address", "not a host"], "HOST:PORT"),
    ("audit", ["--executor", "ray", "--ray-address", "127.0.0.1:1", "--jobs", "1"], "cannot reach"),
    # outputs: refused up front
    ("audit", ["--out", "{tmp}/x", "--cache-dir", "{tmp}/x"], "never replaces an input"),
    ("audit", ["--out", "{tmp}/r", "--cache-dir", "{tmp}/r/cache", "--force"], "never replaces an input"),
    ("audit", ["--out", ".", "--force"], "folder you run"),
    ("train", ["--out", ".", "--force"], "folder you run"),
    ("audit", ["--out", "tests/..", "--force"], "folder you run"),
    ("report", ["{T}/report.json", "--out", "{tmp}/taken"], "another audit"),
    ("report", ["{T}/report.json", "--out", "{tmp}/a_file/sub"], "is a file"),
    ("attack", ["{T}/report.json", "--cache-dir", "{tmp}/c", "--out", "{tmp}/a_file/sub"], "is a file"),
    ("attack", ["{T}/report.json", "--cache-dir", "{tmp}/o3", "--out", "{tmp}/o3"], "never replaces an input"),
    # options a mode ignores, and an explicit attack list that cannot run
    ("audit", ["--epsilons", "8", "--target", "{T}/nan.pt", "--target-members", "{tmp}/good_members.txt"],
     "--target-epsilon"),
    ("audit", ["--epsilons", "8", "--from-signals", "{T}/sig_ok.npz"], "--target-epsilon"),
    ("audit", ["--shadow-models", "8", "--from-signals", "{T}/sig_ok.npz"], "rows 1.."),
    ("audit", ["--canaries", "50", "--from-signals", "{T}/sig_ok.npz"], "canary_scores"),
    ("audit", ["--attacks", "rmia-online", "--shadow-models", "2"], "--shadow-models >= 4"),
]


@pytest.mark.parametrize("cmd,args,expect", ROWS, ids=[f"{c} {' '.join(a)[:40]}" for c, a, _ in ROWS])
def test_bad_input_row(tmp_path, monkeypatch, cmd, args, expect):
    import os
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # model specs are relative to the repository
    _prepare(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    args = [a.replace("{tmp}", str(tmp_path)).replace("{T}", str(_template())) for a in args]
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
