"""The self-contained HTML report."""
from __future__ import annotations

import base64
import re

from dpaudit.html import render_html
from dpaudit.report import overall_verdict, render


def test_html_contents(small_report):
    page = render_html(small_report)
    assert page.startswith("<!DOCTYPE html>")
    m = re.search(r'<div id="verdict" class="([a-z-]+)"', page)
    assert m and m.group(1) == {"VIOLATION": "violation", "consistent": "consistent"}.get(
        overall_verdict(small_report), "no-dp-claim")
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
    small_report["models"][1]["canary"] = {"m": 100, "included": 48, "r": 20, "v": 19, "k_plus": 10,
                                          "epsilon_lb": 0.81, "correction": "none",
                                          "test_accuracy_with_canaries": 0.612,
                                          "test_accuracy_without_canaries": 0.634}
    page = render_html(small_report)
    assert '<div id="verdict" class="violation"' in page
    assert 'id="canary-table"' in page and "0.612" in page and "0.634" in page


def test_render_html_via_report(small_report):
    files = render(small_report, "html")
    assert list(files) == ["report.html"] and files["report.html"].startswith(b"<!DOCTYPE html>")
