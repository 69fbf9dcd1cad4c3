"""`dpaudit check` fed bad reports, bad policies and bad paths, as a careless or hostile user would.

Every row states the exit status it must get: 2 for bad input or an I/O error (with exactly one line on
stderr and nothing on stdout), 1 for a report the gate must fail (naming the rule that fails), 0 for the
few that must pass. No row may print a traceback or leave a file behind (nor change one).

The rows are mutations of a real report: ``reports/reference/report.json``, the committed output of a real audit
(non-DP, ε = 8 and ε = 1 models, five attacks, black-box canaries, white-box gradient canaries; see
reports/README.md). It is read once per session, so this stays in the fast tier. Models: [0] non-dp, [1] dp-eps8
(consistent on the white-box canaries' power alone: detectable ε 8.22 ≤ 2 × 8, while its attacks' and canaries'
ceiling 5.47 is below 8, so their detectable ε is inf), [2] dp-eps1 (consistent, detectable ε 1.01). Keep this as the regression list of
every probe found so far: the rows marked "issue 25" are that issue's `check trusts what it should recompute` list.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpaudit.cli import main

REFERENCE = Path(__file__).resolve().parent.parent / "reports" / "reference" / "report.json"
BASE = REFERENCE.read_text()
_DOC = json.loads(BASE)


@dataclass
class Row:
    name: str
    exit: int
    report: Callable[[], object] | bytes | str | None = None  # a doc, raw bytes/text, or None: the valid one
    args: Callable[[Path], list[str]] = lambda d: []  # noqa: E731  extra arguments, given the folder
    files: dict[str, str] = field(default_factory=dict)  # other files to create first (policy, baseline)
    expect: str = ""  # in stderr for exit 2, in a FAIL line of stdout for exit 1


def _node(doc, path: str):
    *head, last = path.split("/")
    node = doc
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    return node, (int(last) if isinstance(node, list) else last)


def _get(doc, path: str):
    node, last = _node(doc, path)
    return node[last]


def _doc(*changes) -> Callable[[], dict]:
    """A factory of the reference report with changes applied: (path, value) sets ("models/1/verdict/status": list
    indexes as numbers), (path, None, True) deletes, and a callable edits the document in place."""
    def make():
        doc = json.loads(BASE)  # a fresh copy: twice as fast as copy.deepcopy(_DOC) (188 rows at collection)
        for ch in changes:
            if callable(ch):
                ch(doc)
                continue
            node, last = _node(doc, ch[0])
            if len(ch) == 3 and ch[2]:
                del node[last]
            else:
                node[last] = ch[1]
        return doc
    return make


def _json(make) -> str:
    return json.dumps(make() if callable(make) else make)


def _scale(path: str, by: float):
    def edit(doc):
        node, last = _node(doc, path)
        node[last] = node[last] * by
    return edit


def _add(path: str, by):
    def edit(doc):
        node, last = _node(doc, path)
        node[last] = node[last] + by
    return edit


def _copy(src: str, dst: str):
    def edit(doc):
        node, last = _node(doc, dst)
        node[last] = copy.deepcopy(_get(doc, src))
    return edit


def _relabel_non_dp(doc):
    """Issue 25: the ε = 1 model relabelled as trained without DP, everything a non-DP model shows set to match."""
    m = doc["models"][2]
    m["dp"] = m["training"]["dp"] = False
    m["target_epsilon"] = m["training"]["target_epsilon"] = m["training"]["epsilon"] = None
    m["verdict"].update(status="no DP claim", claimed_epsilon=None, ratio=None)
    m["accountant_check"] = m["whitebox"] = None


def _unobserved(doc):
    """Issue 25: a trained report's DP model marked not observed, its accountant check dropped."""
    doc["models"][2]["training"]["observed"] = False
    doc["models"][2]["accountant_check"] = None


def _reject_consistently(doc):
    """A conformance test rejected, and every field that follows from it updated: a real nonconformance."""
    wb = doc["models"][2]["whitebox"]
    wb["tests"][0].update(p_value=1e-6, passed=False)
    wb.update(conformant=False, failed=["noise_std"], broken=[wb["tests"][0]["broken"]])
    doc["models"][2]["verdict"]["rejected_conformance"] = ["noise_std"]
    # the sentence of a nonconformant verdict (the status itself is left to each row)
    doc["models"][2]["verdict"]["text"] = _recomputed_verdict(doc["models"][2], ["noise_std"],
                                                              [("white-box canaries", wb["detectable_epsilon"])]).text


def _recomputed_verdict(m: dict, rejected: list[str], detectable: list[tuple[str, float]]):
    """What dpaudit.core.bounds.decide_verdict says of a DP model's stored bounds (as dpaudit.pipeline lists them)."""
    from dpaudit.core.bounds import decide_verdict

    wb, c = m["whitebox"], m["canary"]
    bounds = [(f"{a['attack']} attack", a["epsilon_lb"]["value"], a["ceiling"]) for a in m["attacks"]]
    bounds += [("canaries (one run)", c["epsilon_lb"], c["ceiling"])]
    bounds += [(f"white-box canaries ({r['label']})", r["epsilon_lb"], r["ceiling"]) for r in wb["routes"] if r["valid"]]
    from dpaudit.core.bounds import whitebox_need
    from dpaudit.schema import WhiteBoxAudit

    return decide_verdict(m["training"]["epsilon"], bounds, rejected, n_canaries=c["m"], detectable=detectable,
                          whitebox_need=whitebox_need(WhiteBoxAudit.from_dict(wb)))


def _powerless(doc):
    """dp-eps8 made genuinely inconclusive, every field that follows updated: its white-box canaries' detectable ε
    (the only route with power below 2 × 8) raised to 20, so that no route could see a leak of twice the claim."""
    m = doc["models"][1]
    m["whitebox"]["detectable_epsilon"] = 20.0
    got = _recomputed_verdict(m, [], [("white-box canaries", 20.0)])
    m["verdict"].update(status="inconclusive", detectable_epsilon=20.0, next_step=got.next_step, text=got.text)


def _swap_models(doc):
    doc["models"][1], doc["models"][2] = doc["models"][2], doc["models"][1]


def _baseline_lower_auc(doc):
    """Every dp-eps8 attack AUC lowered to the least its stored ROC curve allows (still verifiable)."""
    for a in doc["models"][1]["attacks"]:
        mt = a["metrics"]
        f, t = mt["roc_fpr"], mt["roc_tpr"]
        mt["auc"] = sum((f[i + 1] - f[i]) * t[i] for i in range(len(f) - 1)) + 1e-9


SCORES = REFERENCE.parent / "scores"


def _scores(*names: str, edit=None) -> dict:
    """Files: the reference audit's stored per-record scores (scores/<model>__<attack>.csv), ``edit`` applied to
    the first one's text."""
    out = {f"scores/{n}.csv": (SCORES / f"{n}.csv").read_text() for n in names}
    if edit is not None:
        first = f"scores/{names[0]}.csv"
        out[first] = edit(out[first])
    return out


def _flip_first_score(text: str) -> str:
    """The first record's score made the largest of all: it is now guessed a member at any threshold."""
    head, first, *rest = text.splitlines()
    i, member, _ = first.split(",")
    return "\n".join([head, f"{i},{member},1e9", *rest]) + "\n"


def _flip_first_canary(text: str) -> str:
    head, first, *rest = text.splitlines()
    i, member, score = first.split(",")
    return "\n".join([head, f"{i},{1 - int(member)},{score}", *rest]) + "\n"


def _consistent_bound(doc):
    """dp-eps1's loss bound counts raised by 60 true positives, its value recomputed from them: a consistent
    edit that only the stored per-record scores can expose."""
    from dpaudit.core.bounds import epsilon_lb_clopper_pearson

    lb = doc["models"][2]["attacks"][0]["epsilon_lb"]
    lb["tp"] += 60
    lb["value"] = epsilon_lb_clopper_pearson(lb["tp"], lb["n_pos"], lb["fp"], lb["n_neg"], lb["delta"],
                                             lb["confidence"])
    lb["direction"] = "tpr/fpr" if lb["value"] > 0 else "none"
    assert lb["value"] == 0.0  # still no evidence: the verdict is unchanged, only the counts lie


def _pol(text: str) -> dict:
    return {"p.toml": text}


def _p(d: Path) -> list[str]:
    return ["--policy", str(d / "p.toml")]


def _b(d: Path) -> list[str]:
    return ["--baseline", str(d / "b.json")]


M1, M2 = "models/1", "models/2"
WB = f"{M2}/whitebox"
A0 = f"{M2}/attacks/0"

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
    Row("auc as a string", 2, report=_json(_doc((f"{A0}/metrics/auc", "0.5"))),
        expect="models[2].attacks[0].metrics.auc must be a number"),
    Row("training deleted", 2, report=_json(_doc(("models/0/training", None, True))),
        expect="models[0].training missing"),
    Row("v2 field missing", 2, report=_json(_doc(("models/1/verdict/ceiling", None, True))),
        expect="models[1].verdict.ceiling missing"),
    Row("duplicate model names", 2, report=_json(_doc(("models/1/name", "non-dp"))), expect="repeats models[0]"),
    Row("report is a directory", 2, args=lambda d: [], report="DIR", expect="is a folder"),
    # a report of the dpaudit before the f-DP route (three white-box routes): named as such, not as damage
    Row("three white-box routes (earlier dpaudit)", 2,
        report=_json(_doc(lambda d: d["models"][2]["whitebox"]["bounds"]["routes"].pop())),
        expect="lists the three white-box routes of an earlier dpaudit"),
    Row("key given twice", 2, report=BASE.replace('"threshold_policy":', '"command": "x", "threshold_policy":', 1),
        expect="appears twice"),
    Row("NaN literal", 2, report=BASE.replace('"auc": 0.5133084081632653', '"auc": NaN', 1), expect="NaN is not JSON"),
    Row("Infinity literal", 2, report=BASE.replace('"epsilon_lb": 0.0', '"epsilon_lb": Infinity', 1),
        expect="Infinity is not JSON"),
    # ---- issue 25, `check` trusts what it should recompute: each of these exited 0 before; now bad input
    Row("wb passed as the string 'false'", 2, report=_json(_doc((f"{WB}/tests/0/passed", "false"))),
        expect="models[2].whitebox.tests[0].passed must be true or false"),
    Row("wb passed as 0", 2, report=_json(_doc((f"{WB}/tests/0/passed", 0))),
        expect="models[2].whitebox.tests[0].passed must be true or false"),
    Row("wb conformant as the string 'false'", 2, report=_json(_doc((f"{WB}/conformant", "false"))),
        expect="models[2].whitebox.conformant must be true or false"),
    Row("wb unknown key", 2, report=_json(_doc((f"{WB}/sneaky", 1))),
        expect="models[2].whitebox.sneaky is not a field of dpaudit.report/2 (unknown field)"),
    Row("wb tests as a dict", 2, report=_json(_doc((f"{WB}/tests", {"noise_std": {"passed": False}}))),
        expect="models[2].whitebox.tests must be a list"),
    Row("wb epsilon_lb as a string", 2, report=_json(_doc((f"{WB}/epsilon_lb", "50"))),
        expect="models[2].whitebox.epsilon_lb must be a number"),
    Row("wb epsilon_lb null", 2, report=_json(_doc((f"{WB}/epsilon_lb", None))),
        expect="models[2].whitebox.epsilon_lb must be a number"),
    Row("DP model deleted, config still lists it", 2, report=_json(_doc((M2, None, True))),
        expect="the report has 2 model(s) but config.epsilons lists 3"),
    Row("DP model relabelled non-DP", 2, report=_json(_doc(_relabel_non_dp)), expect="models[2] is 'dp-eps1' (no DP)"),
    Row("white-box block deleted", 2, report=_json(_doc((WB, None))),
        expect="models[2].whitebox is missing but config.gradient_canaries is 1000"),
    Row("one ceiling null, verdict ceiling 100", 2,
        report=_json(_doc((f"{M1}/attacks/0/ceiling", None), (f"{M1}/verdict/ceiling", 100.0))),
        files=_pol("forbid_inconclusive = true\n"), args=_p, expect="models[1].attacks[0].ceiling is null"),
    Row("all ceilings null", 2, report=_json(_doc(*[(f"{M1}/attacks/{i}/ceiling", None) for i in range(5)],
                                                  (f"{M1}/verdict/ceiling", None), (f"{M1}/canary/ceiling", None))),
        files=_pol("forbid_inconclusive = true\n"), args=_p, expect="models[1].attacks[0].ceiling is null"),
    Row("schema downgraded to /1", 2, report=_json(_doc(("schema", "dpaudit.report/1"))),
        files=_pol("forbid_inconclusive = true\n"), args=_p, expect="verifies dpaudit.report/2 reports only"),
    Row("training unobserved, accountant check dropped", 2, report=_json(_doc(_unobserved)),
        expect="models[2].training.observed is false in a report whose training dpaudit observed"),
    Row("auc lowered below its ROC curve", 2, report=_json(_doc((f"{M1}/attacks/3/metrics/auc", 0.50))),
        args=lambda d: ["--max-auc", "0.53"], expect="models[1].attacks[3].metrics.auc is 0.5 but its stored ROC"),
    Row("auc -5", 2, report=_json(_doc((f"{A0}/metrics/auc", -5))), expect="metrics.auc is -5, outside [0, 1]"),
    Row("tpr 7", 2, report=_json(_doc((f"{A0}/metrics/tpr_at_fpr/0.01", 7))),
        expect="models[2].attacks[0].metrics.tpr_at_fpr.0.01 is 7, outside [0, 1]"),
    Row("tpr -1 under a tpr limit", 2, report=_json(_doc(*[(f"{M2}/attacks/{i}/metrics/tpr_at_fpr/0.01", -1)
                                                            for i in range(5)])),
        args=lambda d: ["--max-tpr-at-1pct-fpr", "0.001"], expect="tpr_at_fpr.0.01 is -1, outside [0, 1]"),
    Row("negative count", 2, report=_json(_doc((f"{A0}/metrics/counts/fp", -3))),
        expect="models[2].attacks[0].metrics.counts.n_neg is 1750 but fp + tn gives 476"),
    Row("negative bound count", 2, report=_json(_doc((f"{A0}/epsilon_lb/tp", -1))),
        expect="models[2].attacks[0].epsilon_lb.tp is -1"),
    Row("verdict confidence 7", 2, report=_json(_doc((f"{M2}/verdict/confidence", 7))),
        expect="models[2].verdict.confidence is 7"),
    Row("bound confidence 7", 2, report=_json(_doc((f"{A0}/epsilon_lb/confidence", 7))),
        expect="models[2].attacks[0].epsilon_lb.confidence is 7"),
    Row("bound 0 over perfect counts", 2, report=_json(_doc((f"{A0}/epsilon_lb/tp", 1750), (f"{A0}/epsilon_lb/fp", 0))),
        expect="models[2].attacks[0].epsilon_lb.value is 0 but Clopper-Pearson on its counts"),
    Row("junit over the report", 2, args=lambda d: ["--junit-xml", str(d / "report.json")],
        expect="--junit-xml"),
    # ---- white-box block: types, p-values, conformance, bounds, ceilings (exit 2)
    Row("wb p-value above 1", 2, report=_json(_doc((f"{WB}/tests/1/p_value", 1.5))),
        expect="models[2].whitebox.tests[1].p_value is 1.5, outside [0, 1]"),
    Row("wb p-value negative", 2, report=_json(_doc((f"{WB}/tests/1/p_value", -0.1))),
        expect="tests[1].p_value is -0.1"),
    Row("wb p-value a string", 2, report=_json(_doc((f"{WB}/tests/1/p_value", "0.5"))),
        expect="tests[1].p_value must be a number"),
    Row("wb rejecting p-value, still passed", 2, report=_json(_doc((f"{WB}/tests/0/p_value", 1e-9))),
        expect="models[2].whitebox.tests[0].passed is true but its p-value"),
    Row("wb passed false at a high p-value", 2, report=_json(_doc((f"{WB}/tests/0/passed", False))),
        expect="tests[0].passed is false but its p-value"),
    Row("wb conformant false, every test passing", 2, report=_json(_doc((f"{WB}/conformant", False))),
        expect="models[2].whitebox.conformant is false but its tests"),
    Row("wb failed list edited", 2, report=_json(_doc((f"{WB}/failed", ["noise_std"]))),
        expect="models[2].whitebox.failed"),
    Row("wb test deleted", 2, report=_json(_doc((f"{WB}/tests/0", None, True))),
        expect="models[2].whitebox.tests lacks noise_std"),
    Row("wb test repeated", 2, report=_json(_doc(_copy(f"{WB}/tests/0", f"{WB}/tests/1"))), expect="or repeats one"),
    Row("wb test renamed", 2, report=_json(_doc((f"{WB}/tests/0/name", "my_test"))),
        expect="is not one of the conformance tests"),
    Row("wb test with an unknown key", 2, report=_json(_doc((f"{WB}/tests/0/ok", True))),
        expect="not a key dpaudit writes"),
    Row("wb statistic a string", 2, report=_json(_doc((f"{WB}/tests/2/statistic", "1"))),
        expect="tests[2].statistic must be a number"),
    Row("wb rejection hidden from the verdict", 2,
        report=_json(_doc(_reject_consistently, (f"{M2}/verdict/rejected_conformance", []))),
        expect="models[2].verdict.rejected_conformance"),
    Row("wb rejection with a consistent status", 2, report=_json(_doc(_reject_consistently)),
        expect="models[2].verdict.status is 'consistent' but its recomputed evidence says 'nonconformant'"),
    Row("wb rejection named in the verdict only", 2, report=_json(_doc((f"{M2}/verdict/rejected_conformance",
                                                                        ["steps"]))),
        expect="models[2].verdict.rejected_conformance"),
    Row("wb epsilon_lb raised", 2, report=_json(_doc((f"{WB}/epsilon_lb", 3.0))),
        expect="models[2].whitebox.epsilon_lb is 3 but its best counted route (epsilon_lb_best) gives 0"),
    Row("wb cp bound raised", 2, report=_json(_doc((f"{WB}/epsilon_lb_cp", 2.0))),
        expect="models[2].whitebox.epsilon_lb_cp is 2"),
    Row("wb cp counts raised", 2, report=_json(_doc(_add(f"{WB}/bounds/cp/tp", 60))),
        expect="are not counts of the 500 values its threshold was not chosen on"),
    Row("wb cp value raised", 2, report=_json(_doc(_add(f"{WB}/bounds/cp/epsilon_lb", 1.0))),
        expect="models[2].whitebox.bounds.cp.epsilon_lb is 1 but Clopper-Pearson on its counts"),
    Row("wb cp on other sample sizes", 2, report=_json(_doc((f"{WB}/bounds/cp/n_pos", 999))),
        expect="tp 253 of 999"),
    Row("wb one-run correct guesses raised", 2, report=_json(_doc(_add(f"{M1}/whitebox/bounds/one_run/v", 20))),
        expect="models[1].whitebox.bounds.one_run.epsilon_lb is 0.639227 but the one-run test"),
    Row("wb one-run more correct than guesses", 2, report=_json(_doc(_add(f"{WB}/bounds/one_run/v", 10_000))),
        expect="correct guesses"),
    Row("wb one-run candidates edited", 2, report=_json(_doc((f"{WB}/bounds/one_run/candidates_tried", [200]))),
        expect="not the audit's fixed candidates"),
    Row("wb final-model bound raised", 2, report=_json(_doc((f"{WB}/final_model_epsilon_lb_cp", 4.0))),
        expect="final_model_epsilon_lb_cp is 4"),
    Row("wb ceiling null", 2, report=_json(_doc((f"{WB}/ceiling", None))),
        expect="models[2].whitebox.ceiling must be a number"),
    Row("wb one-run ceiling raised", 2, report=_json(_doc((f"{WB}/ceiling_one_run", 9.0))),
        expect="models[2].whitebox.ceiling_one_run is 9 but its one_run route gives"),
    Row("wb confidence edited", 2, report=_json(_doc((f"{WB}/confidence", 0.5))),
        expect="models[2].whitebox.confidence is 0.5"),
    Row("wb fewer canaries than configured", 2, report=_json(_doc((f"{WB}/m", 10))),
        expect="models[2].whitebox.m is 10 but config.gradient_canaries is 1000"),
    Row("wb included edited", 2, report=_json(_doc((f"{WB}/included", 500))),
        expect="differ from the training record's gradient_canaries"),
    Row("wb claim edited", 2, report=_json(_doc((f"{WB}/claimed_epsilon", 50.0))),
        expect="models[2].whitebox.claimed_epsilon is 50"),
    Row("wb block on the non-DP model", 2, report=_json(_doc(_copy(WB, "models/0/whitebox"))),
        expect="models[0].whitebox is present but"),
    Row("wb record of gradient canaries dropped", 2, report=_json(_doc((f"{M2}/training/gradient_canaries", None))),
        expect="models[2].training.gradient_canaries is null but the model has a white-box block"),
    # ---- attack bounds, ceilings and metrics (exit 2)
    Row("bound raised to 50", 2, report=_json(_doc((f"{A0}/epsilon_lb/value", 50.0))),
        expect="models[2].attacks[0].epsilon_lb.value is 50 but Clopper-Pearson"),
    Row("bound null", 2, report=_json(_doc((f"{A0}/epsilon_lb/value", None))),
        expect="models[2].attacks[0].epsilon_lb.value is null"),
    Row("bound at another delta", 2, report=_json(_doc((f"{A0}/epsilon_lb/delta", 1e-3))),
        expect="models[2].attacks[0].epsilon_lb.delta is 0.001"),
    Row("bound on other sample sizes", 2, report=_json(_doc((f"{A0}/epsilon_lb/n_neg", 100))),
        expect="epsilon_lb bounds ε on 1750 members and 100 non-members"),
    Row("bound direction wrong", 2, report=_json(_doc((f"{A0}/epsilon_lb/direction", "tpr/fpr"))),
        expect="epsilon_lb.direction is 'tpr/fpr' for a bound of 0"),
    Row("bound method renamed", 2, report=_json(_doc((f"{A0}/epsilon_lb/method", "magic"))),
        expect="epsilon_lb.method is 'magic'"),
    Row("attack ceiling raised", 2, report=_json(_doc((f"{A0}/ceiling", 20.0))),
        expect="models[2].attacks[0].ceiling is 20 but a perfect attack"),
    Row("ceilings lowered to look inconclusive", 2, report=_json(_doc(*[(f"{M2}/attacks/{i}/ceiling", 0.8)
                                                                        for i in range(5)])),
        expect="models[2].attacks[0].ceiling is 0.8"),
    Row("counts do not add up", 2, report=_json(_doc(_add(f"{A0}/metrics/counts/tp", 5))),
        expect="models[2].attacks[0].metrics.counts.n_pos is 1750 but tp + fn gives 1755"),
    Row("counts tpr edited", 2, report=_json(_doc((f"{A0}/metrics/counts/tpr", 0.9))),
        expect="models[2].attacks[0].metrics.counts.tpr is 0.9 but tp / n_pos"),
    Row("advantage edited", 2, report=_json(_doc((f"{A0}/metrics/advantage", 0.3))),
        expect="models[2].attacks[0].metrics.advantage is 0.3 but its counts"),
    Row("balanced accuracy 1.5", 2, report=_json(_doc((f"{A0}/metrics/balanced_accuracy", 1.5))),
        expect="metrics.balanced_accuracy is 1.5, outside [0, 1]"),
    Row("auc interval backwards", 2, report=_json(_doc((f"{A0}/metrics/auc_ci", [0.6, 0.4]))),
        expect="metrics.auc_ci runs backwards"),
    Row("auc interval beyond 1", 2, report=_json(_doc((f"{A0}/metrics/auc_ci", [0.4, 2.0]))),
        expect="metrics.auc_ci[1] is 2, outside [0, 1]"),
    Row("auc raised above its ROC curve", 2, report=_json(_doc((f"{A0}/metrics/auc", 0.9))),
        args=lambda d: ["--max-auc", "0.95"], expect="models[2].attacks[0].metrics.auc is 0.9 but its stored ROC"),
    Row("roc point above 1", 2, report=_json(_doc((f"{A0}/metrics/roc_fpr/3", 1.5))),
        expect="models[2].attacks[0].metrics.roc_fpr[3] is 1.5"),
    Row("roc decreasing", 2, report=_json(_doc((f"{A0}/metrics/roc_tpr/5", 0.9))), expect="roc_tpr decreases"),
    Row("roc lists of different lengths", 2, report=_json(_doc((f"{A0}/metrics/roc_fpr/3", None, True))),
        expect="must be two lists of equal length"),
    Row("roc not from (0, 0)", 2, report=_json(_doc((f"{A0}/metrics/roc_tpr/0", 0.0001))),
        expect="must run from (0, 0) to (1, 1)"),
    Row("tpr at 1% edited against its counts", 2, report=_json(_doc(_add(f"{A0}/metrics/tpr_at_fpr/0.01", 0.002))),
        expect="models[2].attacks[0].metrics.tpr_at_fpr.0.01 is"),
    Row("tpr counts above the FPR level", 2, report=_json(_doc((f"{A0}/metrics/tpr_at_fpr_counts/0.01/fp", 300))),
        expect="fp 300 of 1750 is an FPR above 0.01"),
    Row("members count edited", 2, report=_json(_doc((f"{A0}/metrics/n_members", 100))),
        expect="counts 100 members"),
    Row("bootstrap level 7", 2, report=_json(_doc((f"{A0}/metrics/bootstrap/level", 7))),
        expect="bootstrap.level is 7, outside (0, 1)"),
    # ---- canaries (exit 2)
    Row("canary bound raised", 2, report=_json(_doc((f"{M2}/canary/epsilon_lb", 1.5))),
        expect="models[2].canary.epsilon_lb is 1.5 but the one-run test"),
    Row("canary correct guesses raised", 2, report=_json(_doc(("models/0/canary/v", 250))),
        expect="models[0].canary.epsilon_lb is 2.97989 but the one-run test"),
    Row("canary guesses at a candidate not tried", 2, report=_json(_doc((f"{M2}/canary/r", 11))),
        expect="r = 11 guesses is not one of its candidates"),
    Row("canary ceiling edited", 2, report=_json(_doc((f"{M2}/canary/ceiling", 0.5))),
        expect="models[2].canary.ceiling is 0.5"),
    Row("canaries deleted", 2, report=_json(_doc((f"{M2}/canary", None))),
        expect="models[2].canary is null but config.canaries is 500"),
    Row("canary candidates edited", 2, report=_json(_doc((f"{M2}/canary/candidates_tried", [10]))),
        expect="not the audit's fixed candidates"),
    Row("canary inclusion edited", 2, report=_json(_doc((f"{M2}/canary/included", 400))),
        expect="400 of 500 canaries included, but the split drew 230"),
    Row("canary confidence edited", 2, report=_json(_doc((f"{M2}/canary/confidence", 0.999))),
        expect="models[2].canary.confidence is 0.999"),
    # ---- verdicts (exit 2)
    Row("verdict ceiling null", 2, report=_json(_doc((f"{M2}/verdict/ceiling", None))),
        expect="models[2].verdict.ceiling is null"),
    Row("verdict ceiling edited", 2, report=_json(_doc((f"{M1}/verdict/ceiling", 100.0))),
        expect="models[1].verdict.ceiling is 100"),
    Row("could_detect flipped", 2, report=_json(_doc((f"{M1}/verdict/could_detect", False))),
        expect="models[1].verdict.could_detect is False"),
    Row("best bound edited", 2, report=_json(_doc((f"{M2}/verdict/empirical_epsilon_lb", 0.1))),
        expect="models[2].verdict.empirical_epsilon_lb is 0.1"),
    Row("ratio edited", 2, report=_json(_doc((f"{M2}/verdict/ratio", 0.01))), expect="models[2].verdict.ratio"),
    Row("inconclusive softened to consistent", 2, report=_json(_doc(_powerless, (f"{M1}/verdict/status",
                                                                                 "consistent"))),
        expect="models[1].verdict.status is 'consistent' but its recomputed evidence says 'inconclusive'"),
    Row("claim edited", 2, report=_json(_doc((f"{M2}/verdict/claimed_epsilon", 0.5))),
        expect="models[2].verdict.claimed_epsilon is 0.5"),
    Row("bound count edited", 2, report=_json(_doc((f"{M2}/verdict/n_bounds", 1))),
        expect="models[2].verdict.n_bounds is 1"),
    Row("family confidence edited", 2, report=_json(_doc((f"{M2}/verdict/family_confidence", 0.5))),
        expect="models[2].verdict.family_confidence is 0.5"),
    Row("per-bound confidence edited", 2, report=_json(_doc((f"{M2}/verdict/per_bound_confidence", 0.95))),
        expect="models[2].verdict.per_bound_confidence is 0.95"),
    Row("evidence source edited", 2, report=_json(_doc((f"{M2}/verdict/source", "loss attack"))),
        expect="models[2].verdict: source"),
    # ---- issue 24 (power branch): balanced canary guesses, measured power, α-spending (exit 2)
    Row("canary guesses top-k only", 2, report=_json(_doc((f"{M2}/canary/k_minus", 0), (f"{M2}/canary/r", 5))),
        expect="with as many guesses out as in"),
    Row("canary correction text edited", 2, report=_json(_doc((f"{M2}/canary/correction", "fixed k"))),
        expect="models[2].canary.correction is 'fixed k'"),
    Row("canary more correct than balanced guesses allow", 2, report=_json(_doc((f"{M2}/canary/v", 11))),
        expect="v = 11 correct guesses of 10 is impossible"),
    Row("canary ceiling of top-k guesses", 2, report=_json(_doc((f"{M2}/canary/ceiling", 2.19642800372))),
        expect="models[2].canary.ceiling is 2.19643 but a perfect attack on 500 canaries (balanced guesses)"),
    Row("coin check says biased", 2, report=_json(_doc((f"{M2}/canary/coin_check/biased", True))),
        expect="models[2].canary.coin_check.biased is 'True'"),
    Row("coin check p-value edited", 2, report=_json(_doc((f"{M2}/canary/coin_check/p_value", 0.5))),
        expect="models[2].canary.coin_check.p_value is 0.5 but the binomial test"),
    Row("coin check deleted", 2, report=_json(_doc((f"{M2}/canary/coin_check", None))),
        expect="models[2].canary.coin_check is missing"),
    Row("attack detectable ε lowered", 2, report=_json(_doc((f"{A0}/detectable_epsilon", 1.5))),
        expect="models[2].attacks[0].detectable_epsilon is 1.5 but the power simulation"),
    Row("attack detectable ε on a non-DP model", 2, report=_json(_doc(("models/0/attacks/0/detectable_epsilon", 3.0))),
        expect="models[0].attacks[0].detectable_epsilon is 3 but a model without a claim"),
    Row("canary detectable ε lowered", 2, report=_json(_doc((f"{M1}/canary/detectable_epsilon", 9.0))),
        expect="models[1].canary.detectable_epsilon is 9 but the power simulation"),
    Row("wb detectable ε below the claim", 2, report=_json(_doc((f"{WB}/detectable_epsilon", 0.5))),
        expect="models[2].whitebox.detectable_epsilon is 0.5, but a detectable ε is a true ε above the claimed"),
    Row("wb detectable ε a string", 2, report=_json(_doc((f"{WB}/detectable_epsilon", "1.0"))),
        expect="models[2].whitebox.detectable_epsilon must be a number"),
    Row("wb noise factor above 1", 2, report=_json(_doc((f"{WB}/detectable_noise_factor", 2.0))),
        expect="models[2].whitebox.detectable_noise_factor is 2"),
    Row("wb power rate raised", 2, report=_json(_doc((f"{WB}/detectable_power/rate", 0.99))),
        expect="models[2].whitebox.detectable_power.rate is 0.99 but its detected runs / n_sims gives 0.866667"),
    Row("wb power: reported factor detected too rarely", 2,
        report=_json(_doc((f"{WB}/detectable_power/points/0/detected", 20))),
        expect="models[2].whitebox.detectable_power: the detectable noise factor 0.985242 is not a simulated factor "
               "detected in >= 0.8 of its 30 runs"),
    Row("wb power interval narrowed", 2, report=_json(_doc((f"{WB}/detectable_power/rate_ci/0", 0.85))),
        expect="models[2].whitebox.detectable_power.rate_ci is not the exact 95% interval of 26 in 30"),
    Row("wb power count above n", 2, report=_json(_doc((f"{WB}/detectable_power/points/1/detected", 99))),
        expect="models[2].whitebox.detectable_power.points[1] is not a factor in (0, 1)"),
    Row("wb powerless, verdict still consistent", 2, report=_json(_doc((f"{M1}/whitebox/detectable_epsilon", 20.0),
                                                                          (f"{M1}/verdict/detectable_epsilon", 20.0))),
        expect="models[1].verdict.status is 'consistent' but its recomputed evidence says 'inconclusive'"),
    Row("verdict detectable ε edited", 2, report=_json(_doc((f"{M2}/verdict/detectable_epsilon", 1.5))),
        expect="models[2].verdict.detectable_epsilon is 1.5 but the smallest"),
    Row("verdict detectable source edited", 2, report=_json(_doc((f"{M2}/verdict/detectable_source", "lira attack"))),
        expect="models[2].verdict.detectable_source is 'lira attack'"),
    Row("power multiple edited", 2, report=_json(_doc((f"{M2}/verdict/power_multiple", 10.0))),
        expect="models[2].verdict.power_multiple is 10"),
    Row("power method edited", 2, report=_json(_doc((f"{M2}/verdict/power_method", "trust me"))),
        expect="models[2].verdict.power_method is 'trust me'"),
    Row("verdict text says consistent, status inconclusive", 2,
        report=_json(_doc(_powerless, _copy(f"{M2}/verdict/text", f"{M1}/verdict/text"))),
        expect="models[1].verdict.text is 'Consistent: no bound exceeds the claimed"),
    Row("verdict text edited", 2, report=_json(_doc((f"{M2}/verdict/text", "Consistent: all fine."))),
        expect="models[2].verdict.text is 'Consistent: all fine.'"),
    Row("next step of an inconclusive verdict edited", 2,
        report=_json(_doc(_powerless, (f"{M1}/verdict/next_step", "nothing to do"))),
        expect="models[1].verdict.next_step is 'nothing to do'"),
    Row("alpha spending deleted", 2, report=_json(_doc(("alpha_spending", None))), expect="alpha_spending is missing"),
    Row("alpha spending: more confidence claimed", 2, report=_json(_doc(("alpha_spending/combined_confidence", 0.99))),
        expect="alpha_spending.combined_confidence is 0.99 but 1 − alpha_spent_total"),
    Row("alpha spending: all of α this run", 2, report=_json(_doc(("alpha_spending/alpha_this_run", 0.05))),
        expect="alpha_spending.alpha_this_run is 0.05"),
    Row("alpha spending: rerun as a string", 2, report=_json(_doc(("alpha_spending/rerun", "0"))),
        expect="alpha_spending.rerun must be an integer"),
    Row("alpha spending: a re-run with less spent before", 2,
        report=_json(_doc(("alpha_spending/rerun", 1), ("alpha_spending/alpha_this_run", 0.0125),
                          ("alpha_spending/alpha_spent_total", 0.0125), ("alpha_spending/combined_confidence", 0.9875))),
        expect="alpha_spending.alpha_spent_before is 0 but the 1 run(s) before this one spent at least 0.025"),
    Row("alpha spending: original audit spent before", 2, report=_json(_doc(("alpha_spending/alpha_spent_before", 0.01))),
        expect="alpha_spending.alpha_spent_before is 0.01"),
    Row("alpha spending: unknown key", 2, report=_json(_doc(("alpha_spending/bonus", 1))),
        expect="alpha_spending.bonus is not a field of dpaudit.report/2 (unknown field)"),
    Row("alpha spending: a negative re-run", 2, report=_json(_doc(("alpha_spending/rerun", -1))),
        expect="alpha_spending.rerun is -1; counts, sizes and seeds are never negative"),
    Row("alpha spending: schedule edited", 2, report=_json(_doc(("alpha_spending/schedule", "spend it all"))),
        expect="alpha_spending.schedule is 'spend it all'"),
    Row("verdicts held at all of α", 2, report=_json(_doc((f"{M2}/verdict/family_confidence", 0.95))),
        expect="models[2].verdict.family_confidence is 0.95 but this run's share"),
    # ---- models against the configuration (exit 2)
    Row("config lists another epsilon", 2, report=_json(_doc(("config/epsilons", ["inf", 8.0, 1.0, 4.0]))),
        expect="config.epsilons lists 4"),
    Row("config drops an attack", 2, report=_json(_doc(("config/attacks", ["loss", "shadow", "rmia", "rmia-online"]))),
        expect="models[0] has the attacks"),
    Row("attack deleted from a DP model", 2, report=_json(_doc((f"{A0}", None, True))),
        expect="models[2] has the attacks"),
    Row("references edited", 2, report=_json(_doc(("config/shadow_models", 8))),
        expect="split.n_models is 5 but config.shadow_models is 8"),
    Row("reference count edited", 2, report=_json(_doc((f"{M2}/reference_models/k", 2))),
        expect="models[2].reference_models.k is 2"),
    Row("model renamed", 2, report=_json(_doc((f"{M2}/name", "dp-eps2"))), expect="models[2] is 'dp-eps2'"),
    Row("models reordered", 2, report=_json(_doc(_swap_models)), expect="models[1] is 'dp-eps1'"),
    Row("target epsilon edited", 2, report=_json(_doc((f"{M2}/target_epsilon", 2.0))),
        expect="models[2].target_epsilon is 2"),
    Row("accountant epsilon edited", 2, report=_json(_doc((f"{M2}/training/epsilon", 0.9))),
        expect="models[2].training.epsilon is 0.9 but its last epoch"),
    Row("training delta edited", 2, report=_json(_doc((f"{M2}/training/delta", 1e-3))),
        expect="models[2].training.delta is 0.001"),
    Row("DP limits edited", 2, report=_json(_doc((f"{M2}/bounds/max_balanced_accuracy", 0.99))),
        expect="models[2].bounds.max_balanced_accuracy is 0.99"),
    Row("accountant check disagrees with itself", 2, report=_json(_doc((f"{M2}/accountant_check/relative_difference",
                                                                        0.0))),
        expect="models[2].accountant_check.relative_difference is 0"),
    Row("accountant checked another epsilon", 2, report=_json(_doc((f"{M2}/accountant_check/opacus", 0.5))),
        expect="models[2].accountant_check.relative_difference"),
    Row("accountant check on the non-DP model", 2, report=_json(_doc(_copy(f"{M2}/accountant_check",
                                                                          "models/0/accountant_check"))),
        expect="models[0] has an accountant cross-check but was trained without DP"),
    Row("report says training not observed", 2, report=_json(_doc(("observed_training", False))),
        expect="models[0].training.observed is true in a report that says dpaudit observed no training"),
    Row("non-DP training with noise", 2, report=_json(_doc(("models/0/training/noise_multiplier", 1.0))),
        expect="models[0].training.noise_multiplier is 1 in a model trained without DP"),
    Row("test accuracy 1.5", 2, report=_json(_doc((f"{M2}/training/test_accuracy", 1.5))),
        expect="models[2].training.test_accuracy is 1.5"),
    Row("sampling rate 2", 2, report=_json(_doc((f"{M2}/training/sample_rate", 2.0))),
        expect="models[2].training.sample_rate is 2"),
    Row("config confidence 7", 2, report=_json(_doc(("config/confidence", 7))), expect="config.confidence is 7"),
    Row("config delta 2", 2, report=_json(_doc(("config/delta", 2))), expect="config.delta is 2"),
    Row("more members than the pool", 2, report=_json(_doc(("split/members", 5000))), expect="split: 5000 members"),
    # ---- policies: exit 2
    Row("policy missing", 2, args=lambda d: ["--policy", str(d / "nope.toml")], expect="not found"),
    Row("policy not toml", 2, files=_pol("max_auc_dp = [\n"), args=_p, expect="not valid TOML"),
    Row("policy unknown key", 2, files=_pol("max_acu_dp = 0.6\n"), args=_p, expect="unknown key 'max_acu_dp'"),
    Row("policy wrong type", 2, files=_pol("[policy]\nmax_auc_dp = 'high'\n"), args=_p, expect="must be a number"),
    Row("forbid_inconclusive not bool", 2, files=_pol("forbid_inconclusive = 'yes'\n"), args=_p,
        expect="forbid_inconclusive must be true or false"),
    Row("allow_nonconformant not bool", 2, files=_pol("allow_nonconformant = 1\n"), args=_p,
        expect="allow_nonconformant must be true or false"),
    Row("policy auc above 1", 2, files=_pol("max_auc_dp = 1.5\n"), args=_p, expect="between 0 and 1"),
    Row("policy negative tolerance", 2, files=_pol("tolerance = -1\n"), args=_p, expect="tolerance must be"),
    Row("policy table not a table", 2, files=_pol("policy = 3\n"), args=_p, expect="must be a table"),
    Row("policy key twice", 2, files=_pol("max_auc_dp = 0.6\n[policy]\nmax_auc_dp = 0.7\n"), args=_p,
        expect="set both"),
    Row("flag auc above 1", 2, args=lambda d: ["--max-auc", "1.5"], expect="between 0 and 1"),
    Row("flag tolerance nan", 2, args=lambda d: ["--tolerance", "nan"], expect="tolerance must be"),
    Row("flag epsilon negative", 2, args=lambda d: ["--max-epsilon", "-1"], expect="max_epsilon must be > 0"),
    # ---- baselines: exit 2, naming the field
    Row("baseline missing", 2, args=lambda d: ["--baseline", str(d / "none.json")], expect="not found"),
    Row("baseline other epsilons", 2, files={"b.json": _json(_doc(("config/epsilons", ["inf", 8.0])))}, args=_b,
        expect="config.epsilons"),
    Row("baseline other confidence", 2, files={"b.json": _json(_doc(("config/confidence", 0.5)))}, args=_b,
        expect="config.confidence"),
    Row("baseline other dataset", 2, files={"b.json": _json(_doc(("dataset/sha256", "0" * 64)))}, args=_b,
        expect="dataset.sha256"),
    Row("baseline other split", 2, files={"b.json": _json(_doc(("split/pool_sha256", "ffff")))}, args=_b,
        expect="split.pool_sha256"),
    Row("baseline other recipe", 2, files={"b.json": _json(_doc(("config/recipes/dp/lr", 0.5)))}, args=_b,
        expect="config.recipes.dp.lr is 0.75 here but 0.5 in the baseline"),
    Row("baseline other attacks", 2, files={"b.json": _json(_doc(("config/attacks", ["loss"])))}, args=_b,
        expect="config.attacks"),
    Row("baseline other delta", 2, files={"b.json": _json(_doc(("config/delta", 1e-6)))}, args=_b,
        expect="config.delta"),
    Row("baseline other members", 2, files={"b.json": _json(_doc(("config/members", 100)))}, args=_b,
        expect="config.members"),
    Row("baseline malformed", 2, files={"b.json": _json(_doc(("models/0/verdict", None, True)))}, args=_b,
        expect="models[0].verdict missing"),
    Row("baseline forged", 2, files={"b.json": _json(_doc((f"{A0}/epsilon_lb/value", 0.0001)))}, args=_b,
        expect="baseline: models[2].attacks[0].epsilon_lb.value"),
    # ---- output paths: exit 2, nothing left behind, no input replaced
    Row("junit is a directory", 2, files={"out/keep": ""}, args=lambda d: ["--junit-xml", str(d / "out")],
        expect="--junit-xml"),
    Row("junit under a file", 2, files={"afile": "x"}, args=lambda d: ["--junit-xml", str(d / "afile" / "j.xml")],
        expect="a folder above it is a file"),
    Row("markdown fails after junit", 2, files={"md/keep": ""},
        args=lambda d: ["--junit-xml", str(d / "j.xml"), "--markdown", str(d / "md")], expect="--markdown"),
    Row("markdown over the report", 2, args=lambda d: ["--markdown", str(d / "report.json")],
        expect="--markdown"),
    Row("junit over the report, spelt otherwise", 2, files={"sub/keep": ""},
        args=lambda d: ["--junit-xml", str(d / "sub" / ".." / "report.json")], expect="is also the report"),
    Row("junit over the baseline", 2, files={"b.json": BASE},
        args=lambda d: [*_b(d), "--junit-xml", str(d / "b.json")], expect="is also the baseline"),
    Row("markdown over the policy", 2, files=_pol("max_auc_dp = 0.99\n"),
        args=lambda d: [*_p(d), "--markdown", str(d / "p.toml")], expect="is also the policy"),
    Row("junit and markdown one file", 2,
        args=lambda d: ["--junit-xml", str(d / "o.txt"), "--markdown", str(d / "o.txt")],
        expect="is also the --junit-xml"),
    # ---- per-record scores stored beside the report (--save-scores): counts, AUC and canaries recomputed (exit 2)
    Row("scores disagree with the counts", 2, files=_scores("dp-eps1__loss", edit=_flip_first_score),
        expect="models[2].attacks[0].metrics.auc is 0.507613 but the scores in scores/dp-eps1__loss.csv"),
    Row("canary scores disagree", 2, files=_scores("dp-eps1__canary", edit=_flip_first_canary),
        expect="scores/dp-eps1__canary.csv holds 500 canaries, 231 in"),
    Row("another audit's scores beside", 2, files={"scores/dp-eps3__loss.csv": (SCORES / "dp-eps1__loss.csv")
                                                   .read_text()}, expect="another audit's scores"),
    Row("scores file malformed", 2, files={"scores/dp-eps1__loss.csv": "is_member,score\n1,abc\n"},
        expect="score 'abc' is not a number"),
    Row("consistent count edit, exposed by the scores", 2, report=_json(_doc(_consistent_bound)),
        files=_scores("dp-eps1__loss"), expect="models[2].attacks[0].epsilon_lb: tp 1346"),
    Row("consistent count edit, no scores to expose it", 0, report=_json(_doc(_consistent_bound))),
    Row("stored scores agree", 0, files=_scores("dp-eps1__loss", "dp-eps1__rmia", "dp-eps1__canary",
                                                 "dp-eps8__lira", "non-dp__canary")),
    # ---- reports the gate must fail: exit 1, naming the rule (each a verifiable report)
    Row("no models", 2, report=_json(_doc(("models", []), ("config/epsilons", []))), expect="config.epsilons is empty"),
    Row("inconclusive forbidden", 1, report=_json(_doc(_powerless)), files=_pol("forbid_inconclusive = true\n"),
        args=_p,
        expect="forbid_inconclusive"),
    Row("auc above the limit", 1, args=lambda d: ["--max-auc", "0.52"], expect="max_auc_dp"),
    Row("tpr above the limit", 1, args=lambda d: ["--max-tpr-at-1pct-fpr", "0.015"], expect="max_tpr_at_1pct_fpr_dp"),
    Row("non-DP auc above the limit", 1, files=_pol("max_auc_non_dp = 0.6\n"), args=_p, expect="max_auc_non_dp"),
    Row("claimed epsilon above the limit", 1, args=lambda d: ["--max-epsilon", "5"], expect="max_epsilon"),
    Row("accuracy below the limit", 1, args=lambda d: ["--min-accuracy", "0.9"], expect="min_accuracy"),
    Row("stored violation is never softened", 1, report=_json(_doc((f"{M2}/verdict/status", "violation"))),
        expect="forbid_violation"),
    Row("accountant flagged", 1, report=_json(_doc((f"{M2}/accountant_check/flagged", True))),
        expect="accountant_check"),
    Row("accountant check missing", 1, report=_json(_doc((f"{M2}/accountant_check", None))),
        expect="accountant_check"),
    Row("non-DP model claims consistent", 1, report=_json(_doc(("models/0/verdict/status", "consistent"))),
        expect="claim_consistent"),
    Row("stored nonconformant", 1, report=_json(_doc((f"{M2}/verdict/status", "nonconformant"))),
        expect="nonconformant"),
    Row("a white-box test rejected", 1, report=_json(_doc(_reject_consistently,
                                                          (f"{M2}/verdict/status", "nonconformant"))),
        expect="nonconformant"),
    Row("auc rose over the baseline", 1, files={"b.json": _json(_doc(_baseline_lower_auc))},
        args=lambda d: [*_b(d), "--tolerance", "0.001"], expect="baseline_auc"),
    # ---- must pass: exit 0
    Row("valid report", 0),
    Row("inconclusive allowed by default", 0),
    Row("violation allowed on request", 0, report=_json(_doc((f"{M2}/verdict/status", "violation"))),
        args=lambda d: ["--allow-violation"]),
    Row("nonconformant allowed by policy", 0, report=_json(_doc((f"{M2}/verdict/status", "nonconformant"))),
        files=_pol("allow_nonconformant = true\n"), args=_p),
    Row("same baseline", 0, files={"b.json": BASE}, args=_b),
    Row("auc at the edge its ROC allows", 0, report=_json(_doc(_baseline_lower_auc))),
    Row("outputs written", 0, args=lambda d: ["--junit-xml", str(d / "j" / "j.xml"), "--markdown", str(d / "c.md")]),
]

# The table had 68 rows before issue 25; it must have grown by at least 60.
ROWS_BEFORE_ISSUE_25 = 68


def _tree(d: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in d.rglob("*")}


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
        assert set(after) - set(before) == {"j", "j/j.xml", "c.md"}
        assert {k: after[k] for k in before} == before
    else:
        assert after == before, set(after) ^ set(before) or [k for k in after if after[k] != before.get(k)]


def test_enough_rows():
    assert len(ROWS) >= ROWS_BEFORE_ISSUE_25 + 60
    assert len({r.name for r in ROWS}) == len(ROWS)
    assert {r.exit for r in ROWS} == {0, 1, 2}


def test_base_is_the_reference_audit():
    """The table's base is the committed real audit, and it passes the gate as it stands."""
    doc = json.loads(BASE)
    assert [m["name"] for m in doc["models"]] == ["non-dp", "dp-eps8", "dp-eps1"]
    assert [m["verdict"]["status"] for m in doc["models"]] == ["no DP claim", "consistent", "consistent"]
    assert doc["models"][2]["whitebox"]["conformant"]
    assert _doc(_powerless)()["models"][1]["verdict"]["status"] == "inconclusive"


@pytest.mark.slow
def test_fresh_audit_with_every_kind_of_evidence_verifies():
    """The writer and the verifier agree on a report made now (not only on the committed one): a tiny real audit
    with attacks, black-box canaries and white-box gradient canaries passes verify_report unchanged, and one
    edited bound is refused."""
    from conftest import small_config
    from dpaudit.check.recompute import verify_report
    from dpaudit.errors import DPAuditError
    from dpaudit.pipeline import run_audit
    from dpaudit.schema import Report

    cfg = small_config(members=200, n_test=200, epochs=1, batch_size=64, shadow_models=1, attacks=("loss",), n_boot=100,
                       epsilons=(float("inf"), 8.0), canaries=50, gradient_canaries=50)
    doc = json.loads(json.dumps(run_audit(cfg, progress=False)[0]))
    verify_report(Report.from_json(doc))
    bad = json.loads(json.dumps(doc))
    bad["models"][1]["attacks"][0]["epsilon_lb"]["value"] += 0.5
    with pytest.raises(DPAuditError, match=r"models\[1\].attacks\[0\].epsilon_lb.value"):
        verify_report(Report.from_json(bad))
    # the white-box block of the full analysis (its route list: one run, split-threshold Clopper-Pearson, per-step
    # witness composition): each route is recomputed from its counts, and what follows from them with it
    wb = doc["models"][1]["whitebox"]
    if "routes" not in wb:
        return
    W = r"models\[1\].whitebox"

    def refused(edit, match):
        bad = json.loads(json.dumps(doc))
        edit(bad["models"][1]["whitebox"])
        with pytest.raises(DPAuditError, match=match):
            verify_report(Report.from_json(bad))

    def more_tp(w):
        for r in (w["bounds"]["routes"][2], w["bounds"]["per_step"], w["routes"][2]):
            r["tp"] = min(r["tp"] + 10, r["n_pos"])
    refused(more_tp, W + r".bounds.routes\[2\].tpr_lb")
    refused(lambda w: w.update(best_route="per_step"), W + r".best_route is 'per_step'")
    refused(lambda w: w.update(routes_text="All routes fine."), W + r".routes_text")
    refused(lambda w: [r.update(valid=False) for r in (w["bounds"]["routes"][2], w["bounds"]["per_step"],
                                                       w["routes"][2])], W + r".bounds.routes\[2\].valid is false")
    refused(lambda w: w["bounds"]["routes"][1].update(confidence=w["confidence"]), W + r".bounds.routes\[1\].confidence")
    refused(lambda w: w.update(epsilon_lb_per_step=3.0), W + r".epsilon_lb_per_step is 3")
    # the f-DP one-run route: its bound from its (m, k, correct), its guess counts the fixed ones
    refused(lambda w: [r.update(epsilon_lb=r["epsilon_lb"] + 0.5) for r in (w["bounds"]["routes"][3], w["routes"][3])],
            W + r".bounds.routes\[3\].epsilon_lb")
    refused(lambda w: [r.update(correct=r["k"] + 1) for r in (w["bounds"]["routes"][3], w["routes"][3])],
            W + r".bounds.routes\[3\]: \d+ correct of")
    refused(lambda w: [r.update(candidates_tried=[r["k"]]) for r in (w["bounds"]["routes"][3], w["routes"][3])],
            W + r".bounds.routes\[3\].candidates_tried")
    refused(lambda w: w["bounds"]["routes"][3].update(confidence=w["confidence"]), W + r".bounds.routes\[3\].confidence")
    refused(lambda w: w["tests"][-1].update(broken="nothing"), W + r".tests\[\d+\].broken")
