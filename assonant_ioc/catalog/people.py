"""Who sees what: the facility's people, their groups and the catalog's access tags.

A facility writes one ``access`` file for ``assonant-ioc catalog serve --access FILE``::

    provider: pam                 # pam | ldap | oidc: where people log in
    admins: [root-of-data]        # their ids at the provider: they see and release all
    proposal_group: "{proposal}"  # the Unix/LDAP group of a proposal's team (NSLS-II's way)
    staff_group: "{beamline}-staff"  # the group of a beamline's staff
    tags_file: user-office.yaml   # optional: tiled tag definitions the user office writes
    recompile_every_s: 20         # group changes take effect within this (no restart)
    access_token_max_age_s: 900   # a page's session: the token lives this long...
    refresh_token_max_age_s: 43200  # ...and is refreshed until this
    ldap: {uri: ldap://host:389, bind_dn_template: ["uid={username},ou=people,dc=x"],
           group_base: "ou=groups,dc=x"}
    oidc: {well_known_uri: ..., client_id: ..., client_secret: ..., audience: ...}

Every record carries the tags ``beamline:B`` and, with a proposal, ``proposal:P``
(``record.access_tags``); a released proposal's records carry ``public`` too. Membership
comes from the facility: the members of the group ``proposal_group`` names read
``proposal:P``, those of ``staff_group`` read ``beamline:B``; the user office's file adds
people or groups to any tag. Every ``recompile_every_s`` the definitions are compiled
into the catalog's database (tiled's ``AccessTagsCompiler``), which the server's
``TagBasedAccessPolicy`` reads on each request: a change of group is in force by then.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import pwd
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

PROVIDERS = ("pam", "ldap", "oidc")
#: what a proposal's member and a beamline's staff may do with a node they are granted
READ_SCOPES = ["read:metadata", "read:data"]
#: every scope a tag may grant (tiled's own names)
ALL_SCOPES = [
    "read:metadata",
    "read:data",
    "write:metadata",
    "write:data",
    "create:node",
    "register",
    "delete:node",
    "delete:revision",
]
_TAG_KINDS = ("proposal:", "beamline:")


@dataclass
class Access:
    provider: str = "pam"
    admins: list[str] = field(default_factory=list)
    proposal_group: str = "{proposal}"
    staff_group: str = "{beamline}-staff"
    tags_file: Path | None = None
    recompile_every_s: float = 20.0
    access_token_max_age_s: int = 900
    refresh_token_max_age_s: int = 43200
    ldap: dict[str, Any] = field(default_factory=dict)
    oidc: dict[str, Any] = field(default_factory=dict)


def load_access(path: Path) -> Access:
    """The access file, every bad entry named in one ValueError."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"access file {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"access file {path}: a mapping of settings, not {type(raw).__name__}")
    bad: list[str] = []
    known = set(Access.__dataclass_fields__)
    for key in sorted(set(raw) - known):
        bad.append(f"{key}: not a setting (known: {', '.join(sorted(known))})")
    access = Access()
    provider = raw.get("provider", "pam")
    if provider not in PROVIDERS:
        bad.append(f"provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    else:
        access.provider = provider
    admins = raw.get("admins", [])
    if not isinstance(admins, list) or not all(isinstance(a, str) and a for a in admins):
        bad.append("admins: a list of ids at the provider")
    else:
        access.admins = admins
    for name, needs in (("proposal_group", "{proposal}"), ("staff_group", "{beamline}")):
        value = raw.get(name, getattr(access, name))
        if not isinstance(value, str) or needs not in value:
            bad.append(f"{name}: a group name containing {needs}, not {value!r}")
        else:
            setattr(access, name, value)
    if raw.get("tags_file") is not None:
        tags_file = Path(str(raw["tags_file"]))
        if not tags_file.is_absolute():
            tags_file = path.parent / tags_file
        access.tags_file = tags_file
    for name in ("recompile_every_s", "access_token_max_age_s", "refresh_token_max_age_s"):
        value = raw.get(name, getattr(access, name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            bad.append(f"{name}: a positive number of seconds, not {value!r}")
        else:
            setattr(access, name, type(getattr(access, name))(value))
    for name, needs_keys in (
        ("ldap", ("uri", "bind_dn_template", "group_base")),
        ("oidc", ("well_known_uri", "client_id", "client_secret", "audience")),
    ):
        section = raw.get(name, {})
        if not isinstance(section, dict):
            bad.append(f"{name}: a mapping")
            continue
        setattr(access, name, section)
        if access.provider == name:
            for key in needs_keys:
                if not section.get(key):
                    bad.append(f"{name}.{key}: needed with provider {name}")
    if bad:
        raise ValueError(f"access file {path}: " + "; ".join(bad))
    return access


# --- group members, from the facility ---------------------------------------------------


def unix_members(group: str) -> list[str]:
    """The members of a Unix group (NSS: local files or SSSD): its member list and the
    accounts whose primary group it is. KeyError: no such group."""
    entry = grp.getgrnam(group)
    members = set(entry.gr_mem)
    members.update(p.pw_name for p in pwd.getpwall() if p.pw_gid == entry.gr_gid)
    return sorted(members)


def ldap_members(settings: dict[str, Any]) -> Callable[[str], list[str]]:
    """The members of an LDAP group under ``group_base``: a posixGroup's ``memberUid``s or
    a groupOfNames' ``member`` DNs (their ``uid=``). KeyError: no such group."""

    def members(group: str) -> list[str]:
        import ldap3
        from ldap3.utils.conv import escape_filter_chars

        server = ldap3.Server(settings["uri"], connect_timeout=10)
        user, password = settings.get("bind_dn"), settings.get("bind_password")
        with ldap3.Connection(
            server, user=user, password=password, auto_bind=True, receive_timeout=10
        ) as conn:
            conn.search(
                settings["group_base"],
                f"(cn={escape_filter_chars(group)})",
                attributes=["memberUid", "member"],
            )
            if not conn.entries:
                raise KeyError(group)
            found: set[str] = set()
            for entry in conn.entries:
                attrs = entry.entry_attributes_as_dict
                found.update(str(u) for u in attrs.get("memberUid", []))
                for dn in attrs.get("member", []):
                    match = re.match(r"(?i)uid=([^,]+),", str(dn))
                    if match:
                        found.add(match.group(1))
            return sorted(found)

    return members


def group_parser(access: Access) -> Callable[[str], list[str]]:
    if access.provider == "ldap":
        return ldap_members(access.ldap)
    return unix_members  # PAM's accounts, and OIDC's where the ids are the Unix names


# --- the tag definitions ------------------------------------------------------------------


def tag_definitions(access: Access, in_use: Iterable[str]) -> dict[str, Any]:
    """tiled's tag definitions for the tags on the catalog's nodes: each proposal's tag
    granted to its group, each beamline's to its staff; the user office's file merged in."""
    tags: dict[str, Any] = {}
    for tag in sorted(set(in_use)):
        if tag.startswith("proposal:"):
            group = access.proposal_group.format(proposal=tag.removeprefix("proposal:"))
            tags[tag] = {"groups": [{"name": group, "role": "member"}]}
        elif tag.startswith("beamline:"):
            group = access.staff_group.format(beamline=tag.removeprefix("beamline:"))
            tags[tag] = {"groups": [{"name": group, "role": "staff"}]}
    roles: dict[str, Any] = {
        "member": {"scopes": READ_SCOPES},
        "staff": {"scopes": READ_SCOPES},
    }
    owners: dict[str, Any] = {}
    if access.tags_file is not None:
        office = yaml.safe_load(access.tags_file.read_text()) or {}
        roles.update(office.get("roles") or {})
        owners.update(office.get("tag_owners") or {})
        for tag, grants in (office.get("tags") or {}).items():
            mine = tags.setdefault(tag, {})
            for kind in ("users", "groups", "auto_tags"):
                if grants.get(kind):
                    mine[kind] = [*mine.get(kind, []), *grants[kind]]
    return {"roles": roles, "tags": tags, "tag_owners": owners}


async def tags_in_use(uri: str) -> list[str]:
    """The proposal and beamline tags the catalog's nodes carry (rows of tiled's table)."""
    from sqlalchemy import select
    from tiled.catalog import orm
    from tiled.server.connection_pool import get_database_engine
    from tiled.server.settings import DatabaseSettings

    engine = get_database_engine(DatabaseSettings(uri=uri))
    async with engine.connect() as conn:
        names = (await conn.execute(select(orm.AccessTag.name))).scalars()
        return [n for n in names if n.startswith(_TAG_KINDS)]


async def compile_access(access: Access, uri: str) -> dict[str, Any]:
    """Compile the definitions into the catalog's database; the counts, for the log."""
    from tiled.access_control.access_tags import AccessTagsCompiler
    from tiled.server.settings import DatabaseSettings

    definitions = tag_definitions(access, await tags_in_use(uri))
    compiler = AccessTagsCompiler(
        set(ALL_SCOPES), definitions, DatabaseSettings(uri=uri), group_parser(access)
    )
    compiler.load_tag_config()
    import warnings

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        await compiler.compile()
    missing = sorted(
        {m.group(1) for w in said if (m := re.search(r"groupname='([^']*)'", str(w.message)))}
    )
    people = {p for users in compiler.compiled_tags.values() for p in users}
    return {
        "tags": len(definitions["tags"]),
        "people": len(people),
        "missing_groups": len(missing),
    } | ({"missing": missing} if missing else {})


async def keep_compiled(access: Access, uri: str, stop: asyncio.Event) -> None:
    """Recompile every ``recompile_every_s`` until ``stop``; a failure is logged and the
    rules in the database stay as they were (never opened up)."""
    last: dict[str, Any] | None = None
    while not stop.is_set():
        try:
            counts = await compile_access(access, uri)
            if counts != last:
                log.info("access rules compiled: %s", counts)
                last = counts
        except Exception as err:  # noqa: BLE001 - a bad file or a lost directory: keep the old rules
            log.error("access rules not recompiled (the previous ones stay): %s", err)
            last = None
        try:
            await asyncio.wait_for(stop.wait(), access.recompile_every_s)
        except TimeoutError:
            pass
