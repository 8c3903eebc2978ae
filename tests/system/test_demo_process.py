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
import threading
import time
from pathlib import Path

import pytest

from tests.system.conftest import REPO
from tests.system.reduction import ARTIFACTS
from tests.system.test_page_script import _chromium

pytestmark = pytest.mark.timeout(900)


def test_the_demo_with_process_shows_the_reconstruction_on_the_page(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    demo = subprocess.Popen(
        ["bash", "scripts/demo.sh", "--process", "--data-dir", str(tmp_path / "out")],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 600
        found = None
        while found is None and time.monotonic() < deadline and demo.poll() is None:
            found = re.search(r"the page: (\S+)/ +\(API key (\w+);", "".join(lines))
            time.sleep(0.2)
        said = "".join(lines)
        assert found is not None, said[-4000:]
        assert "nabu (nabu " in said and "Ctrl-C (or SIGTERM) stops the demo" in said, said
        url, key = found.groups()
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                page.goto(url)
                page.fill("#api-key", key)
                page.select_option("#technique", "NXtomo")
                page.click("#search")
                page.wait_for_selector("tr.file").click()
                page.wait_for_selector("#plot-default[data-drawn='yes']", timeout=60000)
                page.wait_for_selector(
                    ".result[data-pipeline='nabu'][data-drawn='yes']", timeout=60000
                )
                # the left plot is a projection of the raw file, the right one nabu's slice
                assert page.inner_text("#default-caption") == "The first projection"
                assert "frame" in (page.locator("#plot-default .gtitle").text_content() or "")
                slice_title = page.locator(".result[data-pipeline='nabu'] .gtitle").text_content()
                assert (slice_title or "").startswith("reconstructed slice"), slice_title
                page.screenshot(path=str(ARTIFACTS / "demo_process_page.png"), full_page=True)
            finally:
                browser.close()
        assert demo.poll() is None  # the page stays up with the output piped
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, "".join(lines)[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    reader.join(10)
    assert "stopping the demo" in "".join(lines)
