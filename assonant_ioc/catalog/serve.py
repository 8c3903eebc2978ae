"""``assonant-ioc catalog serve``: tiled's server over the catalog, for one key or for people.

Without ``--access`` it is tiled's single-user mode: one API key reads everything (a
beamline's own machine). With ``--access FILE`` it is tiled's multi-user mode: people log
in at the provider the file names (PAM, LDAP or OIDC), tiled's ``TagBasedAccessPolicy``
shows each person the nodes of their proposals and beamlines only (another's node answers
404, as a missing one), released proposals are readable without login, and the tag
definitions are recompiled from the facility's groups every ``recompile_every_s``
(``assonant_ioc.catalog.people``). Either way no raw file is handed out (tiled's asset
routes are off) and tiled's access log becomes ``audit:`` lines (who, what, result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from assonant_ioc.catalog.people import Access, keep_compiled, load_access

log = logging.getLogger(__name__)
audit = logging.getLogger("assonant_ioc.audit")

HDF5_MIMETYPE = "application/x-hdf5"  # as catalog.store registers the files
#: the files' adapter under an access policy (catalog.hdf5 says why)
FILE_ADAPTER = "assonant_ioc.catalog.hdf5:FileAdapter"
POLICY = "tiled.access_control.access_policies:TagBasedAccessPolicy"
TAGS_PARSER = "tiled.access_control.access_tags:AccessTagsParser"
AUTHENTICATORS = {
    "pam": "tiled.authenticators:PAMAuthenticator",
    "ldap": "tiled.authenticators:LDAPAuthenticator",
    "oidc": "tiled.authenticators:OIDCAuthenticator",
}
#: the routes that read a node (what the audit lines are about)
_READS = re.compile(r"^/api/v1/(metadata|search|array|table|node|container|asset|awkward)/")
_ACCESS_LINE = re.compile(
    r"\((?P<who>[^)]*)\) - \"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+\" (?P<status>\d{3})"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def provider_entry(access: Access) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if access.provider == "ldap":
        ldap = access.ldap
        match = re.match(r"^(ldaps?)://([^:/]+)(?::(\d+))?", ldap["uri"])
        if not match:
            raise ValueError(f"ldap.uri {ldap['uri']!r}: ldap://host[:port] or ldaps://")
        args = {
            "server_address": match.group(2),
            "server_port": int(match.group(3)) if match.group(3) else None,
            "use_ssl": match.group(1) == "ldaps",
            "use_tls": bool(ldap.get("use_tls", True)),
            "bind_dn_template": ldap["bind_dn_template"],
        }
    elif access.provider == "oidc":
        keys = ("well_known_uri", "client_id", "client_secret", "audience")
        args = {k: access.oidc[k] for k in keys} | {
            k: v for k, v in access.oidc.items() if k not in keys
        }
    return {
        "provider": access.provider,
        "authenticator": AUTHENTICATORS[access.provider],
        "args": args,
    }


def tiled_config(
    access: Access,
    uri: str,
    reads: list[str],
    people_uri: str,
    secret: str,
    host: str,
    port: int,
    origins: list[str],
) -> dict[str, Any]:
    """tiled's multi-user configuration (one file, handed to ``tiled serve config``)."""
    return {
        "authentication": {
            "providers": [provider_entry(access)],
            "tiled_admins": [{"provider": access.provider, "id": a} for a in access.admins],
            "secret_keys": [secret],
            # released (public) nodes are read without login; nothing else is
            "allow_anonymous_access": True,
            "access_token_max_age": access.access_token_max_age_s,
            "refresh_token_max_age": access.refresh_token_max_age_s,
            "session_max_age": access.refresh_token_max_age_s,
        },
        "database": {"uri": people_uri, "init_if_not_exists": True},
        "access_control": {
            "access_policy": POLICY,
            "args": {"provider": access.provider, "access_tags_parser": TAGS_PARSER},
        },
        "trees": [
            {
                "path": "/",
                "tree": "catalog",
                "args": {
                    "uri": uri,
                    "readable_storage": reads,
                    "init_if_not_exists": True,
                    "adapters_by_mimetype": {HDF5_MIMETYPE: FILE_ADAPTER},
                    # the root is seen by all; each node below by its tags' people only
                    "top_level_access_tags": ["public"],
                },
            }
        ],
        "uvicorn": {"host": host, "port": port},
        "allow_origins": origins,
        "expose_raw_assets": False,
    }


def _secret(state: Path) -> str:
    """The key that signs sessions, kept (0600) beside the catalog so sessions survive a
    restart of the server."""
    path = state / "catalog-session.key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def serve(args: argparse.Namespace) -> int:
    from assonant_ioc.catalog.store import normalise_uri, redacted

    uri = normalise_uri(args.catalog)
    reads = []
    for root in args.read:
        if not Path(root).is_dir():
            sys.stderr.write(f"--read {root}: no such directory (yet)\n")
        reads.append(str(Path(root).resolve()))
    env = dict(os.environ)
    # no raw file is ever handed out: tiled's /asset routes (bytes, manifest) are off
    env["TILED_EXPOSE_RAW_ASSETS"] = "false"
    origins = [o.rstrip("/") for o in args.allow_origin]
    if args.access:
        return _serve_people(args, uri, reads, origins, env)
    key = _single_user_key(args, env)
    cmd = [sys.executable, "-m", "tiled", "serve", "catalog", uri, "--init"]
    for root in reads:
        cmd += ["--read", root]
    cmd += ["--host", args.host, "--port", str(args.port)]
    if args.public:
        cmd.append("--public")
    if origins:  # tiled's settings from the environment (CORS for the page)
        env["TILED_ALLOW_ORIGINS"] = json.dumps(origins)
    sys.stderr.write(f"tiled serving {redacted(uri)} on http://{args.host}:{args.port}\n")
    sys.stderr.flush()
    return run_redacted(cmd, env, key)


def _single_user_key(args: argparse.Namespace, env: dict[str, str]) -> str:
    if args.api_key_file:
        env["TILED_SINGLE_USER_API_KEY"] = Path(args.api_key_file).read_text().strip()
    key = env.get("TILED_SINGLE_USER_API_KEY", "").strip()
    if not key:
        raise ValueError(
            "no API key: set TILED_SINGLE_USER_API_KEY or give --api-key-file "
            "(tiled would make one up and print it); or --access FILE for people"
        )
    if not (key.isascii() and key.isalnum()):
        raise ValueError(
            "the API key must be ASCII letters and digits only (tiled's rule): "
            "python3 -c 'import secrets; print(secrets.token_hex(32))' makes one"
        )
    env["TILED_SINGLE_USER_API_KEY"] = key
    return key


def _serve_people(
    args: argparse.Namespace, uri: str, reads: list[str], origins: list[str], env: dict[str, str]
) -> int:
    import yaml

    from assonant_ioc.catalog.store import Catalog, redacted

    access = load_access(Path(args.access))
    if args.public:
        raise ValueError("--public and --access: a released proposal is public, nothing else")
    env.pop("TILED_SINGLE_USER_API_KEY", None)
    state = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite") else None
    state = Path(args.state) if args.state else state
    if state is None:
        raise ValueError("where do sessions and people live? --state DIR")
    state.mkdir(parents=True, exist_ok=True)
    people_uri = args.people_db or f"sqlite:///{state / 'catalog-people.db'}"

    async def prepare() -> None:  # the catalog's tables, then the rules, before any request
        catalog = await Catalog.open(uri)
        await catalog.close()
        from assonant_ioc.catalog.people import compile_access

        log.info("access rules compiled: %s", await compile_access(access, uri))

    asyncio.run(prepare())
    config = tiled_config(
        access, uri, reads, people_uri, _secret(state), args.host, args.port, origins
    )
    config_path = state / "catalog-tiled.yml"
    config_path.touch(mode=0o600)
    config_path.write_text(yaml.safe_dump(config))
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    keeper = threading.Thread(
        target=loop.run_until_complete,
        args=(keep_compiled(access, uri, stop),),
        name="access-rules",
        daemon=True,
    )
    keeper.start()
    cmd = [sys.executable, "-m", "tiled", "serve", "config", str(config_path)]
    sys.stderr.write(
        f"tiled serving {redacted(uri)} on http://{args.host}:{args.port} to the people of "
        f"{access.provider} (admins: {', '.join(access.admins) or 'none'})\n"
    )
    sys.stderr.flush()
    try:
        return run_redacted(cmd, env, secret=None)
    finally:
        loop.call_soon_threadsafe(stop.set)
        keeper.join(timeout=30)


def audit_line(line: str) -> str | None:
    """tiled's access-log line as an ``audit:`` line when it is a read of a node."""
    match = _ACCESS_LINE.search(_ANSI.sub("", line))
    if not match or not _READS.match(match["path"]):
        return None
    status = int(match["status"])
    result = "allowed" if status < 400 else f"refused ({status})"
    who = match["who"].strip("'") or "anon"
    return f"audit: {who} {match['method']} {match['path']}: {result}"


def run_redacted(cmd: list[str], env: dict[str, str], secret: str | None) -> int:
    """tiled's server as a child whose output is passed on with any secret masked (its
    start-up banner prints the API key in a URL) and its node reads as ``audit:`` lines;
    SIGTERM and SIGINT go to it; its exit status is ours."""
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    assert child.stdout is not None
    for raw in child.stdout:
        line = raw.decode(errors="replace")
        if secret:
            line = line.replace(secret, "***")
        said = audit_line(line)
        sys.stderr.write(f"{said}\n" if said else line)
        sys.stderr.flush()
    return child.wait()
