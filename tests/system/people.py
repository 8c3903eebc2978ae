"""Real people for the access tests: Unix accounts and groups (PAM checks their passwords),
or an LDAP directory (Debian's slapd, started here on a free port), and the HTTP calls a
person's script makes to the catalog (login, search, read)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assonant_ioc.sim import procs

#: person -> (password, group); the groups are the proposals' (NSLS-II's way) and the staff's
PEOPLE = {
    "alice": ("alice-pw-1", "2026-0001"),
    "bob": ("bob-pw-2", "2026-0002"),
    "carol": ("carol-pw-3", "SIM-staff"),
}


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{what} needs root in CI")
        pytest.skip(f"{what} needs root")


@contextlib.contextmanager
def unix_people() -> Iterator[dict[str, tuple[str, str]]]:
    """alice, bob and carol as Unix accounts with their passwords and groups; removed after
    (only what this made)."""
    need_root("creating Unix accounts")
    made_users: list[str] = []
    made_groups: list[str] = []
    try:
        for name, (password, group) in PEOPLE.items():
            if subprocess.run(["getent", "group", group], capture_output=True).returncode:
                subprocess.run(["groupadd", group], check=True)
                made_groups.append(group)
            if subprocess.run(["id", name], capture_output=True).returncode:
                subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
                made_users.append(name)
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
            subprocess.run(["usermod", "-aG", group, name], check=True)
        yield PEOPLE
    finally:
        for name in made_users:
            subprocess.run(["userdel", name], capture_output=True)
        for group in made_groups:
            subprocess.run(["groupdel", group], capture_output=True)


BASE = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PW = "directory-secret"


def _slapd() -> Path:
    found = shutil.which("slapd") or (
        "/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists() else None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's slapd is not installed in CI (.ci/run installs it)")
        pytest.skip("no slapd: apt-get install slapd ldap-utils")
    return Path(found)


def _ldif(entries: list[dict[str, Any]]) -> str:
    blocks = []
    for entry in entries:
        lines = [f"dn: {entry['dn']}"]
        for key, values in entry.items():
            if key == "dn":
                continue
            for value in values if isinstance(values, list) else [values]:
                lines.append(f"{key}: {value}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@contextlib.contextmanager
def ldap_directory(log_dir: Path, work: Path) -> Iterator[str]:
    """slapd on 127.0.0.1 (a free port) with ou=people (alice, bob, carol and their
    passwords) and ou=groups (posixGroups named as the proposals and the staff); yields its
    ldap:// URI. Stopped by its PID after."""
    slapd = _slapd()
    work.mkdir(parents=True, exist_ok=True)
    (work / "db").mkdir(exist_ok=True)
    schema = Path("/etc/ldap/schema")
    conf = work / "slapd.conf"
    conf.write_text(
        "\n".join(
            [
                *(
                    f"include {schema / n}.schema"
                    for n in ("core", "cosine", "nis", "inetorgperson")
                ),
                f"pidfile {work / 'slapd.pid'}",
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                "database mdb",
                f'suffix "{BASE}"',
                f'rootdn "{ROOT_DN}"',
                f"rootpw {ROOT_PW}",
                f"directory {work / 'db'}",
                "maxsize 10485760",
                "",
            ]
        )
    )
    port = procs.free_port()
    uri = f"ldap://127.0.0.1:{port}"
    log = (log_dir / "slapd.log").open("ab")
    proc = subprocess.Popen(
        [str(slapd), "-d", "0", "-h", uri, "-f", str(conf)], stdout=log, stderr=log
    )
    try:
        procs.wait_until(
            lambda: (
                subprocess.run(
                    ["ldapsearch", "-x", "-H", uri, "-b", "", "-s", "base"], capture_output=True
                ).returncode
                == 0
            ),
            30,
            "slapd",
        )
        entries: list[dict[str, Any]] = [
            {"dn": BASE, "objectClass": ["dcObject", "organization"], "dc": "example", "o": "ex"},
            {"dn": f"ou=people,{BASE}", "objectClass": "organizationalUnit", "ou": "people"},
            {"dn": f"ou=groups,{BASE}", "objectClass": "organizationalUnit", "ou": "groups"},
        ]
        for n, (name, (password, _group)) in enumerate(PEOPLE.items()):
            entries.append(
                {
                    "dn": f"uid={name},ou=people,{BASE}",
                    "objectClass": ["inetOrgPerson", "posixAccount"],
                    "uid": name,
                    "cn": name,
                    "sn": name,
                    "uidNumber": 20001 + n,
                    "gidNumber": 20001 + n,
                    "homeDirectory": f"/nonexistent/{name}",
                    "userPassword": password,
                }
            )
        for n, group in enumerate(sorted({g for _p, g in PEOPLE.values()})):
            members = [name for name, (_p, g) in PEOPLE.items() if g == group]
            entries.append(
                {
                    "dn": f"cn={group},ou=groups,{BASE}",
                    "objectClass": "posixGroup",
                    "cn": group,
                    "gidNumber": 30001 + n,
                    "memberUid": members,
                }
            )
        ldap_modify(uri, _ldif(entries), add=True)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ldap_modify(uri: str, ldif: str, add: bool = False) -> None:
    command = ["ldapadd" if add else "ldapmodify", "-x", "-H", uri, "-D", ROOT_DN, "-w", ROOT_PW]
    subprocess.run(command, input=ldif, text=True, check=True, capture_output=True)


def remove_from_ldap_group(uri: str, group: str, member: str) -> None:
    ldap_modify(
        uri,
        f"dn: cn={group},ou=groups,{BASE}\nchangetype: modify\ndelete: memberUid\n"
        f"memberUid: {member}\n",
    )


# --- a person's HTTP calls --------------------------------------------------------------


def call(
    url: str, token: str | None = None, apikey: str | None = None, **kw: Any
) -> tuple[int, bytes]:
    """GET (or POST with ``data=``/``json=``) ``url``; (status, body), errors included."""
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if apikey:
        headers["Authorization"] = f"Apikey {apikey}"
    data = None
    if "form" in kw:
        data = urllib.parse.urlencode(kw["form"]).encode()
    if "json" in kw:
        data = json.dumps(kw["json"]).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def log_in(base: str, provider: str, name: str, password: str) -> str:
    status, body = call(
        f"{base}/api/v1/auth/provider/{provider}/token",
        form={"grant_type": "password", "username": name, "password": password},
    )
    assert status == 200, (status, body[:300])
    return str(json.loads(body)["access_token"])


def visible(
    base: str, token: str | None = None, apikey: str | None = None, **equal: str
) -> list[str]:
    """The keys a search (by ``field=value``) finds for this person."""
    params = [("page[limit]", "100")]
    for key, value in equal.items():
        params += [("filter[eq][condition][key]", key)]
        params += [("filter[eq][condition][value]", json.dumps(value))]
    status, body = call(
        f"{base}/api/v1/search/?{urllib.parse.urlencode(params)}", token=token, apikey=apikey
    )
    if status != 200:
        return [f"HTTP {status}"]
    return sorted(item["id"] for item in json.loads(body)["data"])
