"""The self-contained HTML report."""
from __future__ import annotations

import base64
import re

import pytest

from dpaudit.errors import DPAuditError
from dpaudit.report import overall_verdict, render
from dpaudit.report.html import BANNER_CLASS, render_html


def test_html_contents(small_report):
    page = render_html(small_report)
    assert page.startswith("<!DOCTYPE html>")
    m = re.search(r'<div id="verdict" class="([a-z-]+)"', page)
    assert m and m.group(1) == BANNER_CLASS.get(overall_verdict(small_report), "no-dp-claim")
    n_rows = len(re.findall(r"<tr[^>]*>", page.split('id="summary-table"')[1].split("</table>")[0])) - 1
    assert n_rows == sum(len(m["attacks"]) for m in small_report["models"])
    assert 'id="reading"' in page and "TPR@0.1%FPR" in page
    assert 'id="summary-table"' in page and 'id="verdict-table"' in page and 'id="glossary"' in page
    for term in ("AUC", "Advantage", "Balanced accuracy", "TPR@FPR", "ε (epsilon)", "δ (delta)", "ε lower bound",
                 "Clopper-Pearson", "One-run canary audit", "Reference models", "Verdict"):
        assert f"<dt>{term}</dt>" in page, term
    for m in small_report["models"]:
        assert m["name"] in page
    assert small_report["dataset"]["sha256"] in page and small_report["split"]["pool_sha256"] in page
    assert "@media print" in page
    assert "dp_accounting" in page


def test_html_images_are_embedded(small_report):
    page = render_html(small_report)
    imgs = re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) >= 3  # roc, epsilon vs success, epsilon per epoch
    for b64 in imgs:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")


def test_html_no_external_references(small_report):
    page = render_html(small_report)
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page


def test_html_escapes_strings(small_report):
    evil = '<script>alert("x")</script><img src=https://evil.example/x.png>'
    small_report["command"] = evil
    small_report["models"][0]["attacks"][0]["description"] = "<b>bold</b> & co"
    page = render_html(small_report)
    assert "<script>" not in page and evil not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page


def test_html_violation_and_canary(small_report):
    small_report["models"][1]["verdict"]["status"] = "violation"
    small_report["models"][1]["canary"] = {
        "method": "one-run (Steinke, Nasr, Jagielski 2023)", "m": 100, "included": 48,
        "score": "negative loss on the canary's wrong label", "epsilon_lb": 0.81, "r": 20, "v": 19, "k_plus": 10,
        "k_minus": 0, "candidates_tried": [2, 5, 10, 20, 50], "correction": "bonferroni over 5 candidates",
        "delta": 1e-4, "confidence": 0.975, "test_accuracy_with_canaries": 0.612,
        "test_accuracy_without_canaries": 0.634, "without_canaries_from": "mean over the reference models",
        "ceiling": 2.2}
    page = render_html(small_report)
    assert '<div id="verdict" class="violation"' in page
    assert 'id="canary-table"' in page and "0.612" in page and "0.634" in page
    # A canary block missing a field fails loudly, naming it, instead of rendering blanks.
    del small_report["models"][1]["canary"]["k_minus"]
    with pytest.raises(DPAuditError, match=r"models\[1\]\.canary\.k_minus missing"):
        render_html(small_report)


def test_render_html_via_report(small_report):
    files = render(small_report, "html")
    assert list(files) == ["report.html"] and files["report.html"].startswith(b"<!DOCTYPE html>")
