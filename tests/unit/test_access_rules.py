"""The access rules compiled into a real catalog (tiled's compiler and parser on SQLite):
the user office's file grants a person a proposal, and a broken file keeps the rules in
force (never opens anything up, never closes what was granted)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from assonant_ioc.catalog.people import compile_access, load_access
from assonant_ioc.catalog.record import Record
from assonant_ioc.catalog.store import Catalog


async def _scopes(uri: str, tag: str, who: str) -> set[str]:
    from tiled.access_control.access_tags import AccessTagsParser
    from tiled.server.settings import DatabaseSettings

    parser = AccessTagsParser()
    await parser.connect(DatabaseSettings(uri=uri))
    return {str(getattr(s, "value", s)) for s in await parser.get_scopes_from_tag(tag, who)}


def test_the_office_grants_and_a_broken_file_keeps_the_rules(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    office = tmp_path / "office.yaml"
    office.write_text("tags:\n  proposal:2026-0009:\n    users: [{name: dave, role: member}]\n")
    access_file = tmp_path / "access.yaml"
    access_file.write_text(
        json.dumps(
            {"provider": "pam", "tags_file": office.name, "proposal_group": "nogroup-{proposal}"}
        )
    )
    access = load_access(access_file)

    async def run() -> tuple[dict[str, object], set[str], set[str]]:
        catalog = await Catalog.open(uri)
        path = tmp_path / "f.nxs"
        meta = {
            "beamline": "UNITBL",
            "proposal": "2026-0009",
            "status": "missing",
            "origin": "event",
            "event_id": "e1",
            "file_path": str(path),
        }
        await catalog.register(Record(path, meta))
        await catalog.close()
        counts = await compile_access(access, uri)
        granted = await _scopes(uri, "proposal:2026-0009", "dave")
        office.write_text("tags: [this is: not, a mapping")  # the office's file broken
        try:
            await compile_access(access, uri)
        except Exception:  # noqa: BLE001 - keep_compiled logs it and keeps the rules
            pass
        kept = await _scopes(uri, "proposal:2026-0009", "dave")
        return counts, granted, kept

    counts, granted, kept = asyncio.run(run())
    assert granted == {"read:metadata", "read:data"}
    assert kept == granted
    # the proposal's group does not exist: said, and nobody else is granted
    assert counts["missing"] == ["UNITBL-staff", "nogroup-2026-0009"], counts
