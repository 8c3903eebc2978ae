"""Settings that survive a restart: a small JSON file, replaced atomically on every change."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def default_path(prefix: str) -> Path:
    """``$XDG_STATE_HOME/assonant-ioc/<prefix>.json`` (``~/.local/state`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in prefix.strip(":")) or "ioc"
    return Path(base) / "assonant-ioc" / f"{safe}.json"


class Autosave:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        """The saved settings, or {} when there are none or the file is unreadable (logged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.error("cannot restore settings from %s: %s", self.path, err)
            return {}
        if not isinstance(data, dict):
            log.error("cannot restore settings from %s: not a JSON object", self.path)
            return {}
        return data

    def save(self, settings: dict[str, Any]) -> None:
        """Write ``settings`` to a temporary file, then rename it over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(settings, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)
