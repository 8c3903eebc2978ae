"""A page as a person sees it: Debian's headless Chromium driven by playwright, over the
page server and the catalog it reads; the screenshots go to ``ARTIFACTS``."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assonant_ioc.sim import catalog_procs, procs
from tests.system.reduction import ARTIFACTS


def chromium() -> str:
    """Debian's chromium; a failure in CI (``scripts/test.sh`` installs it), else a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed in CI (scripts/test.sh installs it)")
        pytest.skip("no chromium: scripts/test.sh installs Debian's")
    return found


@contextlib.contextmanager
def browser_page(width: int = 1300, height: int = 900) -> Iterator[Any]:
    """A new page of a headless Chromium, closed (with its browser) on the way out."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


@contextlib.contextmanager
def page_over_catalog(
    log_dir: Path, db: str, roots: list[Path], api_key: str, height: int = 900
) -> Iterator[tuple[Any, str]]:
    """The catalog of ``db`` (its files under ``roots``, read with ``api_key``), the page
    server over it, and a browser's page: yields (the page, the page server's address)."""
    page_port = procs.free_port()
    page_url = f"http://127.0.0.1:{page_port}"
    with (
        catalog_procs.catalog_server(log_dir, db, roots, api_key, allow_origin=page_url) as url,
        catalog_procs.page_server(log_dir, url, page_port),
        browser_page(height=height) as page,
    ):
        yield page, page_url
