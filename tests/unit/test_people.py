"""The access file, the tag definitions made from it and the audit lines (pure logic; the
people themselves, PAM and LDAP, are in tests/system/test_who_sees_what.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assonant_ioc.catalog.people import load_access, tag_definitions
from assonant_ioc.catalog.serve import audit_line


def test_a_bad_access_file_names_every_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(
        "provider: kerberos\nadmins: admin\nproposal_group: team\nrecompile_every_s: 0\n"
        "colour: blue\n"
    )
    with pytest.raises(ValueError) as err:
        load_access(path)
    said = str(err.value)
    for name in ("provider", "admins", "proposal_group", "recompile_every_s", "colour"):
        assert f"{name}:" in said, said


def test_ldap_needs_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    path.write_text("provider: ldap\nldap: {uri: 'ldap://127.0.0.1:389'}\n")
    with pytest.raises(ValueError, match=r"ldap\.bind_dn_template.*ldap\.group_base"):
        load_access(path)


def test_each_tag_is_granted_to_its_group_and_the_office_adds_people(tmp_path: Path) -> None:
    office = tmp_path / "office.yaml"
    office.write_text("tags:\n  proposal:2026-0001:\n    users: [{name: dave, role: member}]\n")
    path = tmp_path / "access.yaml"
    path.write_text(
        f"proposal_group: 'p{{proposal}}'\nstaff_group: '{{beamline}}-staff'\n"
        f"tags_file: {office.name}\n"
    )
    access = load_access(path)
    defs = tag_definitions(access, ["proposal:2026-0001", "beamline:SIM", "public", "user:x"])
    assert defs["tags"] == {
        "beamline:SIM": {"groups": [{"name": "SIM-staff", "role": "staff"}]},
        "proposal:2026-0001": {
            "groups": [{"name": "p2026-0001", "role": "member"}],
            "users": [{"name": "dave", "role": "member"}],
        },
    }
    assert defs["roles"]["member"]["scopes"] == ["read:metadata", "read:data"]


def test_the_access_log_becomes_audit_lines() -> None:
    refused = (
        "[1a2b] 127.0.0.1:5000 ('bob') - \"GET /api/v1/metadata/f-0123456789 HTTP/1.1\" "
        "\x1b[31m404\x1b[0m"
    )
    assert audit_line(refused) == "audit: bob GET /api/v1/metadata/f-0123456789: refused (404)"
    allowed = '[-] 127.0.0.1:5 (anon) - "GET /api/v1/search/?page[limit]=1 HTTP/1.1" 200'
    assert audit_line(allowed) == "audit: anon GET /api/v1/search/?page[limit]=1: allowed"
    assert audit_line('[-] 1.2.3.4:5 (anon) - "GET /api/v1/ HTTP/1.1" 200') is None
