"""Settings that survive a restart: a small JSON file, replaced atomically and durably on
every change, with a backup of the last good one (EPICS autosave's ``.savB``) restored when
the file is unreadable (a power cut in the middle of a write, a disk error, an edit)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from assonant_ioc.lifecycle.journal import write_durable

log = logging.getLogger(__name__)


def default_path(prefix: str) -> Path:
    """``$XDG_STATE_HOME/assonant-ioc/<prefix>.json`` (``~/.local/state`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in prefix.strip(":")) or "ioc"
    return Path(base) / "assonant-ioc" / f"{safe}.json"


def _read(path: Path) -> dict[str, Any]:
    """The settings in ``path``; raises OSError or ValueError when they cannot be read."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


class Autosave:
    def __init__(self, path: Path) -> None:
        self.path = path
        #: the last good settings before the current ones
        self.backup = path.with_name(path.name + ".savB")

    def load(self) -> dict[str, Any]:
        """The saved settings; the backup when the file is unreadable (logged); {} when
        there are none."""
        try:
            return _read(self.path)
        except FileNotFoundError:
            if not self.backup.exists():
                return {}
            why = "missing"
        except (OSError, ValueError) as err:
            why = str(err) or type(err).__name__
        try:
            data = _read(self.backup)
        except (OSError, ValueError) as err:
            log.error(
                "cannot restore settings from %s (%s) nor from its backup %s (%s)",
                self.path,
                why,
                self.backup,
                err,
            )
            return {}
        log.error(
            "settings file %s unreadable (%s): restored from its backup %s",
            self.path,
            why,
            self.backup,
        )
        return data

    def save(self, settings: dict[str, Any]) -> None:
        """Keep the current file (when readable) as the backup, then write ``settings`` over
        it; each durable (fsync) before the next step."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _read(self.path)
            write_durable(self.backup, self.path.read_bytes())
        except (OSError, ValueError):
            pass  # none yet, or unreadable: the backup keeps the last good one
        write_durable(self.path, json.dumps(settings, indent=1, sort_keys=True).encode())


def default_state_dir(autosave: Path | None, prefix: str) -> Path:
    """Beside the autosave file: ``<autosave name without .json>.state``."""
    base = autosave or default_path(prefix)
    return base.with_name(f"{base.stem}.state")
