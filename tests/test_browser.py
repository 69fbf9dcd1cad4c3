"""Open the HTML report in a real headless Chromium: no network requests, elements present, renders."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (Debian package chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CDP:
    """A minimal DevTools-protocol client over one page's websocket."""

    def __init__(self, url: str):
        import websocket

        self.ws = websocket.create_connection(url, timeout=15, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e["method"] == event:
                return e
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == event:
                    return msg
        raise TimeoutError(event)

    def close(self):
        self.ws.close()


def _page_ws_url(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                targets = json.load(r)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("chromium's DevTools endpoint did not come up")
        time.sleep(0.2)


def test_report_in_headless_chromium(small_report, tmp_path):
    pytest.importorskip("websocket", reason="pip install websocket-client (the test extra)")
    from dpaudit.report import overall_verdict
    from dpaudit.report.html import render_html

    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(small_report), encoding="utf-8")
    profile = tmp_path / "profile"
    profile.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cdp = None
    try:
        cdp = CDP(_page_ws_url(port, time.monotonic() + 20))
        cdp.send("Network.enable")
        cdp.send("Page.enable")
        # a laptop screen: the first screen must fit it without sideways scrolling
        cdp.send("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
        url = Path(html_path).resolve().as_uri()
        cdp.send("Page.navigate", url=url)
        cdp.wait_for("Page.loadEventFired")
        time.sleep(0.3)  # let late requests (if any) be reported
        cdp.send("Runtime.evaluate", expression="1")  # drains pending events
        requested = [e["params"]["request"]["url"] for e in cdp.events if e["method"] == "Network.requestWillBeSent"]
        assert requested, "no request seen at all: Network events were not collected"
        assert url in requested
        external = [u for u in requested if not (u.startswith("file://") or u.startswith("data:"))]
        assert not external, external

        expr = ("JSON.stringify({v: document.getElementById('verdict') && document.getElementById('verdict')"
                ".textContent, cls: document.getElementById('verdict') && document.getElementById('verdict')"
                ".className, s: !!document.getElementById('summary-table'), rows: document.querySelectorAll("
                "'#summary-table tbody tr').length, imgs: Array.from(document.images).filter(i => i.complete && "
                "i.naturalWidth > 0).length})")
        res = cdp.send("Runtime.evaluate", expression=expr, returnByValue=True)
        info = json.loads(res["result"]["value"])
        overall = overall_verdict(small_report)
        assert info["s"] is True
        assert info["rows"] == sum(len(m["attacks"]) for m in small_report["models"])
        assert info["v"] and overall.lower().split()[0] in info["v"].lower()
        from dpaudit.report.html import BANNER_CLASS

        assert info["cls"] == BANNER_CLASS.get(overall, "no-dp-claim")
        assert info["imgs"] >= 3

        # The first screen: one row per model, visible without scrolling, and no horizontal scroll at 1,280 px
        # (every wide table scrolls inside its own box, folded in <details> below).
        expr = ("JSON.stringify({w: document.documentElement.scrollWidth, vw: window.innerWidth, "
                "rows: document.querySelectorAll('#first-screen tbody tr').length, "
                "bottom: document.getElementById('first-screen').getBoundingClientRect().bottom, "
                "vh: window.innerHeight, folded: document.querySelectorAll('details').length})")
        screen = json.loads(cdp.send("Runtime.evaluate", expression=expr, returnByValue=True)["result"]["value"])
        assert screen["vw"] == 1280
        assert screen["w"] <= screen["vw"], screen
        assert screen["rows"] == len(small_report["models"])
        assert screen["bottom"] <= screen["vh"], screen
        assert screen["folded"] >= 5
        # opened, the details still do not scroll the page sideways
        cdp.send("Runtime.evaluate", expression="document.querySelectorAll('details').forEach(d => d.open = true)")
        w = cdp.send("Runtime.evaluate", expression="document.documentElement.scrollWidth", returnByValue=True)
        assert w["result"]["value"] <= 1280

        shot = cdp.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
        (tmp_path / "screenshot.png").write_bytes(png)
    finally:
        if cdp is not None:
            try:
                cdp.close()
            except Exception:
                pass
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
