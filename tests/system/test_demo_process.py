"""The README's ``bash scripts/demo.sh --process`` as a newcomer runs it, its output piped:
the tomography is written, reduced by nabu on the CPU (the demo installs nabu's backend
itself), and the page, in headless Chromium, shows the file's projection and the
reconstructed slice; the page stays up until Ctrl-C, which stops the demo, said as it
goes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from subprocess import DEVNULL, PIPE, STDOUT, Popen
from typing import Any

import pytest

from tests.system.browser import browser_page
from tests.system.conftest import REPO
from tests.system.reduction import ARTIFACTS

pytestmark = pytest.mark.timeout(900)


def _page_of(demo: subprocess.Popen[str], lines: list[str]) -> tuple[str, str]:
    """The page's address and API key, once the demo says them."""
    deadline = time.monotonic() + 600
    found = None
    while found is None and time.monotonic() < deadline and demo.poll() is None:
        found = re.search(r"the page: (\S+)/ +\(API key (\w+);", "".join(lines))
        time.sleep(0.2)
    assert found is not None, "".join(lines)[-4000:]
    return found.group(1), found.group(2)


def _end(demo: subprocess.Popen[str], reader: threading.Thread) -> None:
    """The demo stopped and its output pipe closed (left open, its file object warns when
    collected, in whatever test runs then). A demo still running (the test failed) gets
    Ctrl-C first, so that it stops the processes it started (each in a session of its own:
    a SIGKILL of the demo alone left them running), and SIGKILL only after a minute."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
    reader.join(10)
    if demo.stdout is not None:
        demo.stdout.close()


def _start(args: list[str]) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    demo = Popen(args, cwd=REPO, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
    reader.start()
    return demo, lines, reader


def _result_shown(page: Any, url: str, key: str, technique: str, pipeline: str) -> None:
    """The page, its first file of ``technique`` opened as a person would (the key, the
    technique, search, a click), until its plot and ``pipeline``'s result are drawn."""
    page.goto(url)
    page.fill("#api-key", key)
    page.select_option("#technique", technique)
    page.click("#search")
    page.wait_for_selector("tr.file").click()
    page.wait_for_selector("#plot-default[data-drawn='yes']", timeout=60000)
    page.wait_for_selector(f".result[data-pipeline='{pipeline}'][data-drawn='yes']", timeout=60000)


def test_the_demo_of_xas_with_process_shows_mu_and_its_normalisation(tmp_path: Path) -> None:
    """``demo --technique xas --process``: the page's mu(E) over the energy in the file's
    unit, and xraylarch's normalised spectrum beside it."""
    cli = [sys.executable, "-m", "assonant_ioc.cli", "demo", "--technique", "xas"]
    demo, lines, reader = _start([*cli, "--process", "--data-dir", str(tmp_path / "out")])
    try:
        url, key = _page_of(demo, lines)
        assert "larch (" in "".join(lines)
        with browser_page(height=1000) as page:
            _result_shown(page, url, key, "NXxas", "larch")
            axis = page.locator("#plot-default .xtitle").text_content()
            assert axis == "energy (keV)", axis  # the file's unit, as it says it
            title = page.locator(".result[data-pipeline='larch'] .gtitle").text_content()
            assert (title or "").startswith("normalised mu(E), E0 89"), title  # Cu K edge
            page.screenshot(path=str(ARTIFACTS / "demo_xas_page.png"), full_page=True)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, "".join(lines)[-3000:]
    finally:
        _end(demo, reader)


def test_the_demo_with_process_shows_the_reconstruction_on_the_page(tmp_path: Path) -> None:
    readme = ["bash", "scripts/demo.sh", "--process", "--data-dir", str(tmp_path / "out")]
    demo, lines, reader = _start(readme)
    try:
        url, key = _page_of(demo, lines)
        said = "".join(lines)
        assert "nabu (nabu " in said and "Ctrl-C (or SIGTERM) stops the demo" in said, said
        with browser_page(height=1000) as page:
            _result_shown(page, url, key, "NXtomo", "nabu")
            # the left plot is a projection of the raw file, the right one nabu's slice
            assert page.inner_text("#default-caption") == "The first projection"
            assert "frame" in (page.locator("#plot-default .gtitle").text_content() or "")
            slice_title = page.locator(".result[data-pipeline='nabu'] .gtitle").text_content()
            assert (slice_title or "").startswith("reconstructed slice"), slice_title
            page.screenshot(path=str(ARTIFACTS / "demo_process_page.png"), full_page=True)
        assert demo.poll() is None  # the page stays up with the output piped
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, "".join(lines)[-3000:]
    finally:
        _end(demo, reader)
    assert "stopping the demo" in "".join(lines)
