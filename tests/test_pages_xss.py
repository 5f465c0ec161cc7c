"""Stored XSS: payloads planted through every way text reaches a page never run in Chromium.

A real ``adaptune serve`` process is attacked the way the outside probe did: script payloads and
NUL bytes in a ticket title (any write token), in the title of an issue a signed webhook
delivers, in an adapter's gate reason and in a feedback text. Then headless Chromium loads every
page the service serves (``/dashboard``, ``/login``, ``/docs``, ``/redoc``) and the evaluation
report rendered from the same payloads, and ``--dump-dom`` shows the document after its scripts
ran: the title must be unchanged, no element the payloads carry may exist, and the payloads must
be there as text (so the planting reached the page). Each page carries a strict
Content-Security-Policy and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adaptune.registry import set_metrics
from browser import FLAGS, chromium
from serve_fixtures import AUTH, SECRET, TOKEN, register_adapter, seed_store, signed, tiny_pair
from tiny_lora import ignore_peft_warning

ROOT = Path(__file__).resolve().parents[1]
RAN = "XSS-RAN"
PAYLOADS = (
    f"<img src=x onerror=\"document.title='{RAN}'\">",
    f"<script>document.title='{RAN}'</script>",
    f"</title></td></table><svg onload=\"document.title='{RAN}'\">",
    f'"><iframe srcdoc="<script>parent.document.title=\'{RAN}\'</script>">',
)
ALL = " ".join(PAYLOADS)
INJECTED = re.compile(r"<(img src=\"x\"|script>document|svg onload|iframe)", re.I)
"""An element the payloads would create if they were parsed as markup."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dump_dom(url: str, profile: Path) -> str:
    """The document after Chromium ran its scripts (3 s of virtual time)."""
    args = [
        chromium(),
        *FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
    assert done.stdout.strip(), f"Chromium printed no DOM for {url}: {done.stderr[-1500:]}"
    return done.stdout


def _title(dom: str) -> str:
    found = re.search(r"<title>(.*?)</title>", dom, re.S)
    return found.group(1) if found else ""


def _serve(home: Path, open_reads: bool) -> tuple[subprocess.Popen, str]:
    port = _port()
    env = {
        **os.environ,
        "ADAPTUNE_HOME": str(home),
        "ADAPTUNE_API_TOKEN": TOKEN,
        "ADAPTUNE_GENERATOR": "none",
        "ADAPTUNE_GITHUB_WEBHOOK_SECRET": SECRET,
        "ADAPTUNE_OPEN_READS": "true" if open_reads else "false",
        "PYTHONPATH": str(ROOT / "src"),
    }
    cmd = [sys.executable, "-m", "adaptune", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail("the server never became ready")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def _plant(base: str) -> None:
    """A ticket, its feedback and a webhook issue, each carrying every payload and a NUL."""
    ticket = {"title": f"KeyError {ALL} nul\x00here", "body": ALL, "generate": False}
    r = httpx.post(f"{base}/v1/tickets", json=ticket, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    feedback = {"rating": "down", "corrected_answer": f"Use this instead: {ALL}\x00"}
    r = httpx.post(f"{base}/v1/tickets/{r.json()['id']}/feedback", json=feedback, headers=AUTH)
    assert r.status_code == 201, r.text
    issue = {
        "number": 88,
        "title": f"Webhook issue {ALL}",
        "body": ALL,
        "state": "open",
        "created_at": "2030-01-01T00:00:00Z",
        "updated_at": "2030-01-01T00:00:00Z",
        "html_url": "https://github.com/o/r/issues/88",
        "labels": [],
        "user": {"login": "someone"},
    }
    raw, sig = signed({"action": "opened", "issue": issue, "repository": {"full_name": "o/r"}})
    headers = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "xss-1",
        "X-Hub-Signature-256": sig,
        "Content-Type": "application/json",
    }
    r = httpx.post(f"{base}/webhooks/github", content=raw, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "stored", r.text


def _assert_inert(dom: str, title: str, where: str) -> None:
    assert _title(dom) == title, f"{where}: a script changed the title to {_title(dom)!r}"
    assert _title(dom) != RAN
    assert not INJECTED.search(dom), f"{where}: an injected element exists in the DOM"


@pytest.mark.e2e
@ignore_peft_warning
@pytest.mark.timeout(600)
def test_planted_payloads_never_run_on_any_page(store, tmp_path, workspace):
    if chromium() is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    seed_store(store, tmp_path)
    model, _ = tiny_pair()
    version = register_adapter(store, model, tmp_path, seed=1, prod=True)
    reason = f"held: {ALL}\x00"
    set_metrics(store, version, {"gate": {"passed": False, "reason": reason}})
    store.close()
    proc, base = _serve(workspace, open_reads=True)
    try:
        _plant(base)
        raw = httpx.get(f"{base}/dashboard", timeout=30)
        pages = {path: httpx.get(f"{base}{path}", timeout=30) for path in ("/login", "/docs")}
        api = httpx.get(f"{base}/v1/adapters", headers=AUTH, timeout=30)
        doms = {
            path: _dump_dom(f"{base}{path}", tmp_path / f"profile{i}")
            for i, path in enumerate(("/dashboard", "/login", "/docs", "/redoc"))
        }
    finally:
        _stop(proc)

    # What the server sent: escaped text, no NUL byte, a strict policy, no sniffing.
    assert raw.status_code == 200 and b"\x00" not in raw.content
    for response in (raw, *pages.values(), api):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" in response.headers
    for response in (raw, pages["/login"]):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, csp
        assert "unsafe-inline" not in csp, csp
    docs_csp = pages["/docs"].headers["content-security-policy"]
    assert re.search(r"script-src [^;]*'sha256-", docs_csp) and "unsafe-eval" not in docs_csp
    assert "script-src 'unsafe-inline'" not in docs_csp

    # What Chromium made of it: nothing ran, nothing was injected, the text is shown.
    dashboard = doms["/dashboard"]
    _assert_inert(dashboard, "adaptune dashboard", "/dashboard")
    for needle in ("KeyError &lt;img src=x onerror=", "Webhook issue &lt;img", "held: &lt;img"):
        assert needle in dashboard, f"{needle!r} is not on the dashboard: the planting failed"
    assert "Use this instead: &lt;img" in dashboard, "the feedback text is not shown"
    _assert_inert(doms["/login"], "adaptune: log in", "/login")
    _assert_inert(doms["/docs"], "adaptune - Swagger UI", "/docs")
    _assert_inert(doms["/redoc"], "adaptune - ReDoc", "/redoc")


@pytest.mark.e2e
def test_the_report_escapes_and_forbids_scripts(tmp_path):
    """The evaluation report, rendered from metrics that carry the payloads, is inert too."""
    if chromium() is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    from adaptune.evaluate.report import render_report

    sample = {k: f"{k} {ALL}\x00" for k in ("issue", "question", "reference", "base", "adaptive")}
    metrics = {
        "id": "r1",
        "domain": f"dom {ALL}",
        "verdict": [f"verdict {ALL}"],
        "samples": [{**sample, "retrieval": "x"}],
    }
    path = render_report(metrics, tmp_path / "report")
    html = path.read_text()
    assert "\x00" not in html and 'http-equiv="Content-Security-Policy"' in html
    policy = re.search(r'Content-Security-Policy" content="([^"]*)"', html).group(1)
    assert "default-src &#39;none&#39;" in policy or "default-src 'none'" in policy
    assert "script-src" not in policy and "unsafe-inline" not in policy
    dom = _dump_dom(path.as_uri(), tmp_path / "profile")
    _assert_inert(dom, "adaptune evaluation · dom " + _escaped(ALL) + " · r1", "report")
    assert "verdict &lt;img src=x" in dom and "question &lt;img src=x" in dom


def _escaped(text: str) -> str:
    import html

    return html.escape(text, quote=False)


def test_every_template_escapes_whatever_its_file_name(tmp_path):
    """The shared environment escapes and cleans in templates of any name (``*.html.j2`` too)."""
    from adaptune.pages import environment, policy

    for name in ("page.html.j2", "page.j2", "page.txt", "page"):
        (tmp_path / name).write_text("<style>p{}</style><p>{{ text }}</p>")
        out = (
            environment(tmp_path)
            .get_template(name)
            .render(text=PAYLOADS[0] + "\x00ghp_" + "a" * 36)
        )
        assert "<img" not in out and "&lt;img" in out, name
        assert "\x00" not in out and "ghp_" not in out and "&lt;GITHUB_TOKEN&gt;" in out, name
        assert "style-src 'sha256-" in policy(tmp_path, name)
    (tmp_path / "bad.j2").write_text("<script>var x = '{{ text }}';</script>")
    with pytest.raises(ValueError, match="Jinja expression"):
        policy(tmp_path, "bad.j2")
