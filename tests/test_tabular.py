"""Tabular records as data: csv:PATH (pandas and the csv module alike), npz feature vectors [N, F], the bundled
breast-cancer records, the built-in mlp, and audits of them end to end (slow)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dpaudit.cli import main
from dpaudit.errors import DPAuditError
from dpaudit.training.data import load_csv, load_dataset
from dpaudit.training.models import (
    DEFAULT_HIDDEN,
    build_model,
    mlp_spec,
    parse_mlp_spec,
    resolve_model,
    validate_for_dp,
)
from dpaudit.training.tabular import encode_table

try:
    import pandas  # noqa: F401

    HAVE_PANDAS = True
except ImportError:  # the tabular extra (and the test extra) install it; the csv module reads CSVs without it
    HAVE_PANDAS = False
READERS = [pytest.param("pandas", marks=pytest.mark.skipif(not HAVE_PANDAS, reason="pandas not installed")), "csv"]


def _breast_cancer_csv(path, n=None):
    """A CSV of the real breast-cancer records with mixed columns: ten numeric features, a text column (the
    mean radius's tercile: small/medium/large), an integer-coded column (the mean texture's tercile, 1/2/3, to be
    named --categorical) and the diagnosis as text."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x, y = d.data[:n], d.target[:n]
    size = np.digitize(x[:, 0], np.quantile(d.data[:, 0], [1 / 3, 2 / 3]))
    texture = np.digitize(x[:, 1], np.quantile(d.data[:, 1], [1 / 3, 2 / 3])) + 1
    names = [c.replace(" ", "_") for c in d.feature_names[:10]]
    lines = [",".join(names + ["size", "texture_band", "diagnosis"])]
    for row, s, t, label in zip(x[:, :10], size, texture, y):
        lines.append(",".join([repr(float(v)) for v in row] + [["small", "medium", "large"][s], str(t),
                                                                 ["malignant", "benign"][label]]))
    path.write_text("\n".join(lines) + "\n")
    return x[:, :10], y, size, texture


@pytest.mark.parametrize("reader", READERS)
def test_csv_mixed_columns_encoded_and_standardised(tmp_path, reader):
    x, y, size, texture = _breast_cancer_csv(tmp_path / "bc.csv")
    ds = load_csv(tmp_path / "bc.csv", "diagnosis", ("texture_band",), reader=reader)
    # 10 numeric + 3 one-hot (size: large, medium, small) + 3 one-hot (texture_band: 1, 2, 3)
    assert ds.images.shape == (569, 16) and ds.images.dtype == np.float32 and ds.input_shape == (16,)
    assert ds.n_features == 16 and ds.provenance.n_features == 16
    assert np.allclose(ds.images[:, :10], x.astype(np.float32))
    size_names = ["large", "medium", "small"]  # sorted
    assert np.array_equal(ds.images[:, 10:13].argmax(1), [size_names.index(["small", "medium", "large"][s]) for s in size])
    assert np.array_equal(ds.images[:, 13:16].argmax(1), texture - 1)
    assert set(np.unique(ds.images[:, 10:])) == {0.0, 1.0} and np.all(ds.images[:, 10:13].sum(1) == 1)
    # labels: "benign" < "malignant" sorted as text, so class 0 is benign here
    assert np.array_equal(ds.labels, 1 - y) and ds.n_classes == 2
    assert "benign" in ds.provenance.source and "0=benign" in ds.provenance.source
    # numeric features standardised over all 569 records; one-hot features left 0/1
    t = ds.to_tensor(ds.images).numpy().astype(np.float64)
    assert np.allclose(t[:, :10].mean(0), 0, atol=1e-5) and np.allclose(t[:, :10].std(0), 1, atol=1e-4)
    assert np.array_equal(t[:, 10:], ds.images[:, 10:])
    assert ds.normalisation.mean[:10] == pytest.approx(tuple(x.astype(np.float32).astype(np.float64).mean(0)))
    assert "10 numeric feature(s)" in ds.preprocessing and "all 569 records" in ds.preprocessing
    assert "'size' one-hot encoded into 3" in ds.preprocessing and "'texture_band' one-hot" in ds.preprocessing


@pytest.mark.skipif(not HAVE_PANDAS, reason="pandas not installed")
def test_both_readers_give_the_same_dataset(tmp_path):
    _breast_cancer_csv(tmp_path / "bc.csv", n=120)
    text = (tmp_path / "bc.csv").read_text()
    # quoting, a BOM, CRLF line ends, blank lines and spaces around cells, as spreadsheets write them
    lines = text.splitlines()
    lines[3] = lines[3].replace(",small,", ',"small",').replace(",medium,", ',"medium",').replace(",large,", ',"large",')
    (tmp_path / "messy.csv").write_bytes(("\ufeff" + "\r\n".join(lines[:5] + [""] + lines[5:]) + "\r\n").encode())
    a = load_csv(tmp_path / "messy.csv", "diagnosis", reader="pandas")
    b = load_csv(tmp_path / "messy.csv", "diagnosis", reader="csv")
    c = load_csv(tmp_path / "bc.csv", "diagnosis", reader="csv")
    assert a.provenance.sha256 == b.provenance.sha256 == c.provenance.sha256
    assert a.normalisation == b.normalisation == c.normalisation


def test_without_pandas_the_csv_module_reads(tmp_path, monkeypatch):
    import sys

    _breast_cancer_csv(tmp_path / "bc.csv", n=50)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    ds = load_dataset(f"csv:{tmp_path / 'bc.csv'}", label_column="diagnosis")
    assert "the csv module" in ds.provenance.source and ds.images.shape == (50, 14)  # 10 + texture_band (numeric here) + 3 one-hot


def test_numeric_labels_sort_as_numbers_and_categorical_names_numeric_codes():
    header = ["f", "code", "y"]
    rows = [["1.5", "10", "10"], ["2.5", "2", "2"], ["0.5", "10", "2"], ["3", "2", "10"]]
    enc = encode_table(header, rows, [2, 3, 4, 5], name="t", label_column="y")
    assert enc["classes"] == ["2", "10"] and enc["labels"].tolist() == [1, 0, 0, 1]
    assert enc["features"].shape == (4, 2) and enc["numeric_columns"] == ["f", "code"]
    enc = encode_table(header, rows, [2, 3, 4, 5], name="t", label_column="y", categorical=("code",))
    assert enc["feature_names"] == ["f", "code=10", "code=2"] and enc["features"][:, 1].tolist() == [1, 0, 1, 0]


def _bad_csv(tmp_path, case):
    p = tmp_path / f"{case}.csv"
    good = ["a,b,c,y"] + [f"{i},{i * 0.5},{'red' if i % 2 else 'blue'},{i % 2}" for i in range(8)]
    lines = list(good)
    if case == "ragged-long":
        lines[4] += ",9"
    elif case == "ragged-short":
        lines[5] = "1,2,red"
    elif case == "nan":
        lines[3] = "2,nan,red,0"
    elif case == "empty-cell":
        lines[6] = "5,,red,1"
    elif case == "string-in-numeric":
        lines[2] = "1,abc,red,1"
    elif case == "mixed":
        lines = ["a,b,c,y"] + [f"{i},{i if i % 2 else 'x' + str(i)},red,{i % 2}" for i in range(8)]
    elif case == "one-class":
        lines = ["a,b,c,y"] + [f"{i},{i},red,1" for i in range(8)]
    elif case == "inf":
        lines[2] = "1,inf,red,1"
    elif case == "duplicate":
        lines[0] = "a,b,a,y"
    elif case == "identifier":
        lines = ["a,name,y"] + [f"{i},person{i},{i % 2}" for i in range(60)]
    elif case == "empty":
        lines = []
    elif case == "only-label":
        lines = ["y"] + [str(i % 2) for i in range(8)]
    elif case == "unnamed":
        lines[0] = "a,,c,y"
    if case == "binary":
        p.write_bytes(b"a,y\n\xff\xfe,1\n")
    else:
        p.write_text("\n".join(lines) + ("\n" if lines else ""))
    return p


BAD_CSV = {
    "ragged-long": "line 5 has 5 field.s. but the header has 4.*ragged", "ragged-short": "line 6 has 3 field",
    "nan": "column 'b' has 1 missing/NaN cell.s., first on line 4", "empty-cell": "column 'b' has 1 missing",
    "string-in-numeric": "column 'b' is numeric but line 3 holds the string 'abc'.*--categorical",
    "mixed": "column 'b' mixes numbers and strings", "one-class": "label column 'y' holds one class",
    "inf": "infinite value", "duplicate": "both named 'a'", "identifier": "like an identifier",
    "empty": "is empty", "only-label": "at least one feature column", "unnamed": "column 2 of the header has no name",
    "binary": "not UTF-8",
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_is_one_line_error(tmp_path, case, reader):
    path = _bad_csv(tmp_path, case)
    with pytest.raises(DPAuditError, match=BAD_CSV[case]) as e:
        load_csv(path, "y", reader=reader)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"csv:{path}")


def test_csv_label_and_categorical_options_are_checked(tmp_path):
    path = _bad_csv(tmp_path, "fine")
    with pytest.raises(DPAuditError, match="no column named 'label'.*columns are a, b, c, y"):
        load_dataset(f"csv:{path}", label_column="label")
    with pytest.raises(DPAuditError, match="give --label-column"):
        load_dataset(f"csv:{path}")
    with pytest.raises(DPAuditError, match="--categorical names 'z'"):
        load_dataset(f"csv:{path}", label_column="y", categorical=("z",))
    with pytest.raises(DPAuditError, match="--label-column .* goes with --dataset csv:PATH"):
        load_dataset("sklearn-digits", label_column="y")
    ds = load_dataset(f"csv:{path}", label_column="y", categorical=("a",))
    assert ds.n_features == 8 + 1 + 2  # a one-hot (8 values), b numeric, c one-hot (2)


# ---- npz feature vectors, the bundled records ---------------------------------------------------------

def test_npz_feature_vectors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-1000, 100000, (50, 7))  # integers of any range are features, not pixels
    np.savez(tmp_path / "t.npz", x=x, y=np.arange(50) % 3, x_test=rng.normal(size=(10, 7)), y_test=np.arange(10) % 3)
    ds = load_dataset(f"npz:{tmp_path / 't.npz'}")
    assert ds.images.shape == (60, 7) and ds.images.dtype == np.float32 and ds.n_features == 7
    assert ds.test_idx.tolist() == list(range(50, 60))
    t = ds.to_tensor(ds.images).numpy()
    assert np.allclose(t.mean(0), 0, atol=1e-4) and np.allclose(t.std(0), 1, atol=1e-4)
    assert "7 numeric feature(s)" in ds.preprocessing and ds.provenance.to_dict()["n_features"] == 7
    np.savez(tmp_path / "nan.npz", x=np.where(np.eye(5, 3) > 0, np.nan, 1.0), y=np.arange(5) % 2)
    with pytest.raises(DPAuditError, match="NaN/inf value.s., first in record 0"):
        load_dataset(f"npz:{tmp_path / 'nan.npz'}")
    np.savez(tmp_path / "str.npz", x=np.array([["a", "b"]] * 4), y=np.arange(4) % 2)
    with pytest.raises(DPAuditError, match="features must be numbers.*csv:PATH"):
        load_dataset(f"npz:{tmp_path / 'str.npz'}")


def test_breast_cancer_is_sklearns_records():
    from sklearn.datasets import load_breast_cancer

    ds = load_dataset("sklearn-breast-cancer")
    ref = load_breast_cancer()
    assert ds.images.shape == (569, 30) and ds.n_classes == 2 and np.array_equal(ds.labels, ref.target)
    assert np.array_equal(ds.images, ref.data.astype(np.float32)) and ds.input_shape == (30,)
    assert ds.normalisation.mean == pytest.approx(tuple(ref.data.astype(np.float32).astype(np.float64).mean(0)))
    x = ds.to_tensor(ds.images)
    assert torch.allclose(x.mean(0), torch.zeros(30), atol=1e-5)
    # images keep their provenance exactly as before: no tabular keys
    assert "n_features" not in load_dataset("sklearn-digits").provenance.to_dict()


# ---- the mlp ----------------------------------------------------------------------------------------

def test_mlp_widths_specs_and_dp_validation():
    m = build_model("mlp", (30,), 2, validate_dp=True)
    assert [p.shape[0] for p in m.parameters() if p.ndim == 2] == [*DEFAULT_HIDDEN, 2]
    assert sum(p.numel() for p in m.parameters()) == 30 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
    m = build_model("mlp-16-8", (5,), 3, validate_dp=True)
    assert [tuple(p.shape) for p in m.parameters() if p.ndim == 2] == [(16, 5), (8, 16), (3, 8)]
    assert len(list(build_model("mlp-0", (5,), 3).parameters())) == 2  # logistic regression
    assert mlp_spec(None) == mlp_spec(DEFAULT_HIDDEN) == "mlp" and mlp_spec((16, 8)) == "mlp-16-8"
    assert mlp_spec(()) == "mlp-0" and parse_mlp_spec("mlp-0") == () and parse_mlp_spec("mlp-x") is None
    assert build_model("mlp", (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)  # images flatten
    validate_for_dp(build_model("mlp", (30,), 2))
    with pytest.raises(DPAuditError, match="simple-cnn takes image records"):
        build_model("simple-cnn", (30,), 2)
    with pytest.raises(DPAuditError, match="up to 8 widths in"):
        resolve_model("mlp-0-4")


def test_user_factory_receives_feature_shape(tmp_path):
    (tmp_path / "tabnets.py").write_text(
        "import torch\nSEEN = []\n"
        "def make(input_shape, n_classes):\n"
        "    SEEN.append(tuple(input_shape))\n"
        "    return torch.nn.Linear(input_shape[0], n_classes)\n")
    spec = f"{tmp_path / 'tabnets.py'}:make"
    factory = resolve_model(spec)
    build_model(spec, (30,), 2, validate_dp=True)
    assert factory.__globals__["SEEN"] == [(30,)]


def test_config_options_refused_in_one_line():
    from dpaudit.config import AuditConfig, parse_hidden

    assert parse_hidden("128, 64") == (128, 64) and parse_hidden("0") == ()
    for kw, match in [({"dataset": "csv:x.csv"}, "needs --label-column"),
                      ({"label_column": "y"}, "--label-column names a column of a CSV"),
                      ({"categorical": ("a",)}, "--categorical names a column"),
                      ({"hidden": (64,), "model": "simple-cnn"}, "--hidden sets the widths"),
                      ({"hidden": (0,)}, "--hidden must be in")]:
        with pytest.raises(DPAuditError, match=match):
            AuditConfig(**kw).validate()
    with pytest.raises(DPAuditError, match="not a whole number"):
        parse_hidden("64,big")
    cfg = AuditConfig(hidden=(32,))
    assert cfg.for_data((30,)).architecture() == "mlp-32" and cfg.for_data((1, 8, 8)).model == "simple-cnn"
    assert AuditConfig().for_data((30,)).architecture() == "mlp"
    assert AuditConfig.from_dict(AuditConfig(hidden=(8, 4), categorical=("a",)).to_dict()).hidden == (8, 4)


def test_breast_cancer_settings_fill_unset_options_only():
    from dpaudit.config import apply_dataset_settings

    got = apply_dataset_settings("sklearn-breast-cancer", {"members": 1750, "n_test": 50}, {"members"})
    assert got == {"members": 200, "n_test": 50}
    assert apply_dataset_settings("mnist-5k", {"members": 1750}, {"members"}) == {"members": 1750}


@pytest.mark.slow
def test_gradient_canaries_on_the_mlp():
    """White-box gradient canaries ride on any model: on the mlp they are observed at every step and the
    training passes the conformance tests against its own accounting."""
    from dpaudit.training.train import TrainConfig, train_model
    from dpaudit.training.whitebox import GradientCanaries, analyse

    ds = load_dataset("sklearn-breast-cancer")
    cfg = TrainConfig(model="mlp", epsilon=4.0, delta=1e-4, epochs=4, batch_size=64, lr=0.5, momentum=0.0, seed=3)
    trained = train_model(cfg, ds.images[:300], ds.labels[:300], test_images=ds.images[400:],
                          test_labels=ds.labels[400:], n_classes=2, progress=False, norm=ds.normalisation,
                          gradient_canaries=GradientCanaries(200, seed=5))
    wb = trained.whitebox
    assert wb.obs.shape == (trained.record.steps, 200) and trained.record.gradient_canaries.m == 200
    res = analyse(wb, confidence=0.95, seed=0)
    assert res.conformant, res.to_json()
    assert trained.record.test_accuracy > 0.8


# ---- end to end (slow) --------------------------------------------------------------------------------

def _run(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code in (0, 1), (res.exit_code, res.output, res.stderr, repr(res.exception))
    return res


@pytest.mark.slow
def test_csv_audit_end_to_end_gated_by_check(tmp_path, monkeypatch):
    """A CSV of mixed numeric and categorical columns, audited with a non-DP and a DP mlp, then gated by
    `dpaudit check`; the report names the features and their preprocessing, and its signals audit again with
    --from-signals."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _breast_cancer_csv(tmp_path / "bc.csv")
    out = tmp_path / "audit"
    common = ["--dataset", f"csv:{tmp_path / 'bc.csv'}", "--label-column", "diagnosis", "--categorical",
              "texture_band", "--members", "200", "--n-test", "169", "--batch-size", "64", "--delta", "1e-4"]
    res = _run(["audit", *common, "--epsilons", "inf,4", "--shadow-models", "2", "--attacks", "loss,rmia,lira",
                "--bootstrap", "200", "--jobs", "1", "--quiet", "--save-signals", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["config"]["model"] == "mlp" and doc["config"]["label_column"] == "diagnosis"
    assert doc["config"]["categorical"] == ["texture_band"]
    assert doc["dataset"]["n_features"] == 16 and "one-hot" in doc["dataset"]["preprocessing"]
    assert "16 features" in (out / "report.md").read_text()
    for m in doc["models"]:
        assert m["training"]["model"] == "mlp" and m["training"]["test_accuracy"] > 0.8
        assert m["verdict"]["ceiling"] is not None and math.isfinite(m["verdict"]["ceiling"])
        lira = next(a for a in m["attacks"] if a["attack"] == "lira")
        assert lira["details"]["queries"] == 1  # no shifted copies of feature vectors
    dp = doc["models"][1]
    assert dp["dp"] and dp["verdict"]["status"] in ("consistent", "inconclusive")
    gate = _run(["check", str(out / "report.json"), "--max-auc", "0.75", "--min-accuracy", "0.8"])
    assert gate.exit_code == 0, gate.output
    fails = _run(["check", str(out / "report.json"), "--min-accuracy", "0.999"])
    assert fails.exit_code == 1  # the gate can fail: no model is 99.9% accurate here
    again = _run(["audit", "--from-signals", str(out / "signals" / "dp-eps4.npz"), "--target-epsilon",
                  str(dp["training"]["epsilon"]), "--delta", "1e-4", "--attacks", "loss,rmia,lira", "--bootstrap",
                  "200", "--quiet", "--out", str(tmp_path / "sig")])
    assert again.exit_code == 0, again.output
    sig = json.loads((tmp_path / "sig" / "report.json").read_text())
    assert sig["models"][0]["attacks"][0]["metrics"]["auc"] == pytest.approx(dp["attacks"][0]["metrics"]["auc"])


@pytest.mark.slow
def test_train_then_audit_as_target_on_csv(tmp_path):
    """`dpaudit train` on a CSV, then that model audited as a --target trained elsewhere (weights only)."""
    _breast_cancer_csv(tmp_path / "bc.csv")
    common = ["--dataset", f"csv:{tmp_path / 'bc.csv'}", "--label-column", "diagnosis", "--members", "200",
              "--n-test", "169", "--batch-size", "64", "--hidden", "32"]
    res = _run(["train", *common, "--epsilon", "inf", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "m" / "model.pt.json").read_text())
    assert meta["input_shape"] == [14] and meta["record"]["model"] == "mlp-32"
    (tmp_path / "members.txt").write_text("\n".join(map(str, meta["members"])))
    res = _run(["audit", *common, "--target", str(tmp_path / "m" / "model.pt"), "--target-members",
                str(tmp_path / "members.txt"), "--shadow-models", "2", "--attacks", "loss,lira", "--bootstrap",
                "200", "--jobs", "1", "--quiet", "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "t" / "report.json").read_text())
    assert doc["observed_training"] is False and doc["config"]["hidden"] == [32]
    assert doc["models"][0]["training"]["test_accuracy"] > 0.8


@pytest.mark.slow
def test_python_api_on_breast_cancer_takes_its_settings():
    """dpaudit.pipeline on the bundled records: the keywords not passed take the dataset's settings, the model is
    the mlp, and the report names the 30 features."""
    from dpaudit.api import audit  # (dpaudit.pipeline is the submodule once dpaudit.pipeline was imported)

    report = audit(dataset="sklearn-breast-cancer", epsilons=(math.inf,), shadow_models=2,
                           attacks=("loss", "lira"), n_boot=100, jobs=1, progress=False, hidden=(16,))
    assert report.config.members == 200 and report.config.n_test == 169 and report.config.batch_size == 64
    assert report.config.model == "mlp" and report.models[0].training.model == "mlp-16"
    assert report.dataset.n_features == 30 and "standardised" in report.dataset.preprocessing
    assert report.split.pool_size == 400 and report.models[0].training.test_accuracy > 0.85
