"""`dpaudit check` fed bad reports, bad policies and bad paths, as a careless or hostile user would.

Every row states the exit status it must get: 2 for bad input or an I/O error (with exactly one line on
stderr and nothing on stdout), 1 for a report the gate must fail (naming the rule that fails), 0 for the
few that must pass. No row may print a traceback or leave a file behind. The rows are mutations of a small
synthetic dpaudit.report/2 document (no training), so this runs in the fast tier; keep it as the regression
list of every probe found so far.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report_model import synthetic_report, with_change

from dpaudit.cli import main


@dataclass
class Row:
    name: str
    exit: int
    report: Callable[[], object] | bytes | str | None = None  # a doc, raw bytes/text, or None: the valid one
    args: Callable[[Path], list[str]] = lambda d: []  # noqa: E731  extra arguments, given the folder
    files: dict[str, str] = field(default_factory=dict)  # other files to create first (policy, baseline)
    expect: str = ""  # in stderr for exit 2, in a FAIL line of stdout for exit 1


def _doc(*changes) -> Callable[[], dict]:
    """A factory of the synthetic report with (path, value) or (path, None, True) changes applied."""
    def make():
        doc = synthetic_report()
        for ch in changes:
            doc = with_change(doc, *ch)
        return doc
    return make


def _json(make) -> str:
    return json.dumps(make() if callable(make) else make)


def _v1() -> dict:
    doc = synthetic_report()
    doc["schema"] = "dpaudit.report/1"
    return doc


def _inconclusive(status: str = "inconclusive") -> Callable[[], dict]:
    """The DP model's every ceiling (0.8) below its claim (1.0): no evidence could have shown a violation."""
    return _doc(("models/1/verdict/ceiling", 0.8), ("models/1/attacks/0/ceiling", 0.8),
                ("models/1/attacks/1/ceiling", 0.8), ("models/1/verdict/status", status))


BASE = _json(synthetic_report)

ROWS = [
    # ---- the report file itself: exit 2
    Row("missing file", 2, args=lambda d: [], report=None, expect="not found"),
    Row("empty file", 2, report=b"", expect="not readable JSON"),
    Row("not json", 2, report="this is not json {", expect="not readable JSON"),
    Row("invalid utf-8", 2, report=b"\xff\xfe{\x00", expect="not readable JSON"),
    Row("json array", 2, report="[]", expect="not a dpaudit report"),
    Row("json string", 2, report='"dpaudit.report/2"', expect="not a dpaudit report"),
    Row("deep nesting", 2, report="[" * 200_000 + "]" * 200_000, expect="not readable JSON"),
    Row("foreign schema", 2, report=json.dumps({"schema": "someone.else/3", "models": []}),
        expect="not a dpaudit report"),
    Row("schema missing", 2, report=_json(_doc(("schema", None, True))), expect="not a dpaudit report"),
    Row("future version", 2, report=_json(_doc(("schema", "dpaudit.report/9"))), expect="is not supported"),
    Row("models not a list", 2, report=_json(_doc(("models", {}))), expect="models must be a list"),
    Row("verdict deleted", 2, report=_json(_doc(("models/1/verdict", None, True))),
        expect="models[1].verdict missing"),
    Row("status in capitals", 2, report=_json(_doc(("models/1/verdict/status", "VIOLATION"))),
        expect="models[1].verdict.status must be one of"),
    Row("unknown top-level field", 2, report=_json(_doc(("extra", 1))), expect="extra is not a field"),
    Row("key with a newline", 2, report=_json(_doc(("models/0/a\nb", 1))), expect="is not a field"),
    Row("auc as a string", 2, report=_json(_doc(("models/1/attacks/0/metrics/auc", "0.5"))),
        expect="models[1].attacks[0].metrics.auc must be a number"),
    Row("training deleted", 2, report=_json(_doc(("models/0/training", None, True))),
        expect="models[0].training missing"),
    Row("v2 field missing", 2, report=_json(_doc(("models/1/verdict/ceiling", None, True))),
        expect="models[1].verdict.ceiling missing"),
    Row("duplicate model names", 2, report=_json(_doc(("models/1/name", "non-dp"))), expect="repeats models[0]"),
    Row("report is a directory", 2, args=lambda d: [], report="DIR", expect="is a folder"),
    # ---- policies: exit 2
    Row("policy missing", 2, args=lambda d: ["--policy", str(d / "nope.toml")], expect="not found"),
    Row("policy not toml", 2, files={"p.toml": "max_auc_dp = [\n"}, args=lambda d: ["--policy", str(d / "p.toml")],
        expect="not valid TOML"),
    Row("policy unknown key", 2, files={"p.toml": "max_acu_dp = 0.6\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="unknown key 'max_acu_dp'"),
    Row("policy wrong type", 2, files={"p.toml": "[policy]\nmax_auc_dp = 'high'\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="must be a number"),
    Row("forbid_inconclusive not bool", 2, files={"p.toml": "forbid_inconclusive = 'yes'\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="forbid_inconclusive must be true or false"),
    Row("allow_nonconformant not bool", 2, files={"p.toml": "allow_nonconformant = 1\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="allow_nonconformant must be true or false"),
    Row("policy auc above 1", 2, files={"p.toml": "max_auc_dp = 1.5\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="between 0 and 1"),
    Row("policy negative tolerance", 2, files={"p.toml": "tolerance = -1\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="tolerance must be"),
    Row("policy table not a table", 2, files={"p.toml": "policy = 3\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="must be a table"),
    Row("policy key twice", 2, files={"p.toml": "max_auc_dp = 0.6\n[policy]\nmax_auc_dp = 0.7\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="set both"),
    Row("flag auc above 1", 2, args=lambda d: ["--max-auc", "1.5"], expect="between 0 and 1"),
    Row("flag tolerance nan", 2, args=lambda d: ["--tolerance", "nan"], expect="tolerance must be"),
    Row("flag epsilon negative", 2, args=lambda d: ["--max-epsilon", "-1"], expect="max_epsilon must be > 0"),
    # ---- baselines: exit 2, naming the field
    Row("baseline missing", 2, args=lambda d: ["--baseline", str(d / "none.json")], expect="not found"),
    Row("baseline other epsilons", 2, files={"b.json": _json(_doc(("config/epsilons", ["inf", 8.0])))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="config.epsilons"),
    Row("baseline other confidence", 2, files={"b.json": _json(_doc(("config/confidence", 0.5)))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="config.confidence"),
    Row("baseline other dataset", 2, files={"b.json": _json(_doc(("dataset/sha256", "0" * 64)))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="dataset.sha256"),
    Row("baseline other split", 2, files={"b.json": _json(_doc(("split/pool_sha256", "ffff")))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="split.pool_sha256"),
    Row("baseline other recipe", 2, files={"b.json": _json(_doc(("config/recipes/dp/lr", 0.5)))},
        args=lambda d: ["--baseline", str(d / "b.json")],
        expect="config.recipes.dp.lr is 0.75 here but 0.5 in the baseline"),
    Row("baseline other attacks", 2, files={"b.json": _json(_doc(("config/attacks", ["loss"])))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="config.attacks"),
    Row("baseline other delta", 2, files={"b.json": _json(_doc(("config/delta", 1e-6)))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="config.delta"),
    Row("baseline other members", 2, files={"b.json": _json(_doc(("config/members", 100)))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="config.members"),
    Row("baseline malformed", 2, files={"b.json": _json(_doc(("models/0/verdict", None, True)))},
        args=lambda d: ["--baseline", str(d / "b.json")], expect="models[0].verdict missing"),
    # ---- output paths: exit 2, nothing left behind
    Row("junit is a directory", 2, files={"out/keep": ""}, args=lambda d: ["--junit-xml", str(d / "out")],
        expect="--junit-xml"),
    Row("junit under a file", 2, files={"afile": "x"}, args=lambda d: ["--junit-xml", str(d / "afile" / "j.xml")],
        expect="a folder above it is a file"),
    Row("markdown fails after junit", 2, files={"md/keep": ""},
        args=lambda d: ["--junit-xml", str(d / "j.xml"), "--markdown", str(d / "md")], expect="--markdown"),
    # ---- reports the gate must fail: exit 1, naming the rule
    Row("no models", 1, report=_json(_doc(("models", []))), expect="evidence_models"),
    Row("stored consistent, bound 50", 1, report=_json(_doc(("models/1/attacks/0/epsilon_lb/value", 50.0))),
        expect="verdict_recomputed"),
    Row("stored consistent, bound 50 (violation rule)", 1,
        report=_json(_doc(("models/1/attacks/0/epsilon_lb/value", 50.0))), expect="forbid_violation"),
    Row("DP model without evidence", 1, report=_json(_doc(("models/1/attacks", []))), expect="evidence_present"),
    Row("bound missing", 1, report=_json(_doc(("models/1/attacks/1/epsilon_lb/value", None))),
        expect="bounds_present"),
    Row("accountant flagged", 1, report=_json(_doc(("models/1/accountant_check/flagged", True))),
        expect="accountant_check"),
    Row("accountant check missing", 1, report=_json(_doc(("models/1/accountant_check", None))),
        expect="accountant_check"),
    Row("accountant checked another epsilon", 1, report=_json(_doc(("models/1/accountant_check/opacus", 0.5))),
        expect="accountant_check"),
    Row("claim edited", 1, report=_json(_doc(("models/1/verdict/claimed_epsilon", 0.5))),
        expect="claim_consistent"),
    Row("dp flag flipped", 1, report=_json(_doc(("models/1/dp", False))), expect="claim_consistent"),
    Row("non-DP model claims consistent", 1, report=_json(_doc(("models/0/verdict/status", "consistent"))),
        expect="claim_consistent"),
    Row("nonconformant", 1, report=_json(_doc(("models/1/verdict/status", "nonconformant"))),
        expect="nonconformant"),
    Row("stored consistent under the ceiling", 1, report=_json(_inconclusive("consistent")),
        expect="verdict_recomputed"),
    Row("inconclusive forbidden", 1, report=_json(_inconclusive()), files={"p.toml": "forbid_inconclusive = true\n"},
        args=lambda d: ["--policy", str(d / "p.toml")], expect="forbid_inconclusive"),
    Row("NaN auc against a limit", 1, report=BASE.replace('"auc": 0.51', '"auc": NaN'),
        args=lambda d: ["--max-auc", "0.9"], expect="max_auc_dp"),
    Row("claimed epsilon rose over baseline", 1,
        report=_json(_doc(("models/1/training/epsilon", 1.5), ("models/1/verdict/claimed_epsilon", 1.5),
                          ("models/1/accountant_check/opacus", 1.5))),
        files={"b.json": BASE}, args=lambda d: ["--baseline", str(d / "b.json")], expect="baseline_claimed_epsilon"),
    # ---- must pass: exit 0
    Row("valid report", 0),
    Row("valid v1 report", 0, report=_json(_v1)),
    Row("inconclusive allowed by default", 0, report=_json(_inconclusive())),
    Row("nonconformant allowed by policy", 0, report=_json(_doc(("models/1/verdict/status", "nonconformant"))),
        files={"p.toml": "allow_nonconformant = true\n"}, args=lambda d: ["--policy", str(d / "p.toml")]),
    Row("same baseline", 0, files={"b.json": BASE}, args=lambda d: ["--baseline", str(d / "b.json")]),
    Row("outputs written", 0, args=lambda d: ["--junit-xml", str(d / "j" / "j.xml"), "--markdown", str(d / "c.md")]),
]


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_check_row(row: Row, tmp_path):
    for name, text in row.files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    report = tmp_path / "report.json"
    if row.name == "missing file":
        pass
    elif row.report == "DIR":
        report.mkdir()
    else:
        data = BASE if row.report is None else row.report
        report.write_bytes(data if isinstance(data, bytes) else data.encode())
    before = _tree(tmp_path)
    res = CliRunner().invoke(main, ["check", str(report), *row.args(tmp_path)])
    after = _tree(tmp_path)
    out, err = res.stdout, res.stderr
    assert res.exit_code == row.exit, (res.exit_code, out, err)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in out + err
    if row.exit == 2:
        assert err.count("\n") == 1 and err.startswith("dpaudit: error: "), err
        assert row.expect in err, err
        assert out == ""
    elif row.exit == 1:
        failing = [line for line in out.splitlines() if line.rstrip().endswith("FAIL")]
        assert any(line.startswith(row.expect) for line in failing), out
    else:
        assert " FAIL" not in out and "rules pass" in out, out
    if row.name == "outputs written":
        assert after - before == {"j", "j/j.xml", "c.md"}
    else:
        assert after == before, after ^ before


def test_enough_rows():
    assert len(ROWS) >= 30
    assert {r.exit for r in ROWS} == {0, 1, 2}
