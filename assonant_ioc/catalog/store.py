"""The tiled catalog the records go into (the only module of the catalog that imports tiled).

SQLite in the state directory is the embedded default; a facility gives a PostgreSQL
URI (``postgresql://user@host/db``). Each record is a node at the catalog's top,
keyed by the file's path; a file that is there is an external HDF5 data source, so
tiled serves every dataset in it (the detector frames through their links included).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from tiled.alembic_utils import UninitializedDatabase
from tiled.catalog import from_uri, orm
from tiled.catalog.adapter import CatalogContainerAdapter, Collision
from tiled.queries import Key
from tiled.structures.core import StructureFamily
from tiled.structures.data_source import Asset, DataSource, Management
from tiled.utils import ensure_uri

from assonant_ioc.catalog.record import FileStatus, Origin, Record, access_tags

log = logging.getLogger(__name__)

HDF5_MIMETYPE = "application/x-hdf5"
#: tiled's tag for what anyone may read (a released proposal's records)
PUBLIC = "public"


class Outcome(str, Enum):
    REGISTERED = "registered"
    DUPLICATE = "duplicate"  # the same file (and event) again: nothing changed
    UPDATED = "updated"  # a backfilled file's event, or a file replaced at the same path


def normalise_uri(uri: str) -> str:
    """A path is an SQLite file (its directory is made); a URI is taken as it is."""
    if "://" not in uri:
        uri = f"sqlite:///{Path(uri).resolve()}"
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


@contextlib.asynccontextmanager
async def _creating(uri: str) -> AsyncIterator[bool]:
    """Held while a catalog is opened, saying whether it may be new: processes opening
    one new SQLite file at once (two processors, a consumer beside them) would race to
    create its tables and set its journal mode, and the loser fail. A lock file beside
    the database orders them; a server's database (PostgreSQL) orders its own."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        yield True
        return
    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    with db.with_name(db.name + ".lock").open("a") as handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield not (db.exists() and db.stat().st_size > 0)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def redacted(uri: str) -> str:
    """The URI as logs and the status show it: any password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy parses: show its scheme only
        return uri.split("://", 1)[0] + "://..."


def _data_sources(record: Record) -> list[DataSource[Any]]:
    if record.status is not FileStatus.OK:
        return []  # nothing tiled could open, or not the file the event said: the record says why
    asset = Asset(
        data_uri=ensure_uri(str(record.real_path)),  # within serve's --read, links resolved
        is_directory=False,
        parameter="data_uris",
        num=None,
    )
    return [
        DataSource(
            structure_family=StructureFamily.container,
            mimetype=HDF5_MIMETYPE,
            structure=None,
            parameters={},
            management=Management.external,
            assets=[asset],
        )
    ]


def _same_file(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool(old.get("sha256")) and old.get("sha256") == new.get("sha256")


class Catalog:
    """Open with ``await Catalog.open(uri)``; ``register`` is idempotent per file."""

    def __init__(self, adapter: CatalogContainerAdapter, uri: str) -> None:
        self._adapter = adapter
        self.uri = uri
        #: for logs and the status endpoint (no password)
        self.shown = redacted(uri)
        #: access tags this process has made sure of (one upsert per new tag, not per file)
        self._defined: set[str] = set()

    @classmethod
    async def open(cls, uri: str) -> Catalog:
        uri = normalise_uri(uri)
        async with _creating(uri) as new:
            # creating runs `tiled catalog init` in a child process: only for a new file
            adapter = from_uri(uri, init_if_not_exists=new)
            try:
                await adapter.startup()
            except UninitializedDatabase:  # a file left by a creation that was cut short
                adapter = from_uri(uri, init_if_not_exists=True)
                await adapter.startup()
        return cls(adapter, uri)

    async def close(self) -> None:
        await self._adapter.shutdown()

    async def get(self, key: str) -> dict[str, Any] | None:
        """The metadata of the record ``key``, or None."""
        try:
            node = await self._adapter.lookup_adapter([key])
        except KeyError:
            return None
        if node is None:
            return None
        return dict(node.metadata())

    async def register(self, record: Record) -> Outcome:
        """Add the record, or say why nothing (or only its metadata) changed."""
        tags = access_tags(record.metadata)
        for attempt in (1, 2):
            await self._define(tags, again=attempt == 2)
            try:  # a new file is the common case: one transaction, no lookup first
                await self._adapter.create_node(
                    structure_family=StructureFamily.container,
                    key=record.key,
                    # the tags tiled's access policy reads on each request, and the same
                    # in the metadata, where the page and a search show them
                    metadata={**record.metadata, "access_tags": tags},
                    specs=[],
                    data_sources=_data_sources(record),
                    access_tags=tags,
                )
                return Outcome.REGISTERED
            except Collision:
                break
            except HTTPException as err:  # the access rules' compiler dropped a new tag
                if attempt == 2 or err.status_code != 403:
                    raise
        old = await self.get(record.key) or {}
        new = record.metadata
        if new["origin"] == Origin.BACKFILL.value:
            return Outcome.DUPLICATE  # a backfill never overrides what is there
        if old.get("event_id") == new["event_id"]:
            return Outcome.DUPLICATE  # the same event again
        if old.get("event_id") and _same_file(old, new):
            return Outcome.DUPLICATE  # another event for the same bytes
        merged = {**old, **new}
        tags = access_tags(merged)
        if PUBLIC in old.get("access_tags", ()) and old.get("proposal") == merged.get("proposal"):
            tags.append(PUBLIC)  # a released proposal's file stays released
        merged["access_tags"] = tags
        if not old.get("event_id"):
            log.info("%s: event %s for a backfilled file", record.key, new["event_id"])
        else:
            log.warning(
                "%s: event %s for %s replaces event %s (sha256 %s -> %s)",
                record.key,
                new["event_id"],
                record.path,
                old.get("event_id"),
                old.get("sha256"),
                new.get("sha256"),
            )
        node = await self._adapter.lookup_adapter([record.key])
        await self._define(tags, again=True)  # not the hot path: made sure of
        await node.replace_metadata(metadata=merged, access_tags=tags)
        return Outcome.UPDATED

    async def _define(self, tags: list[str], again: bool = False) -> None:
        """The access tags' rows, so that a node can carry them before the access rules'
        compiler (``catalog.people``) has granted them to anyone: until then, only admins
        see the node. Each tag once per process (``again``: the compiler dropped one)."""
        if not again and self._defined.issuperset(tags):
            return
        engine = self._adapter.context.engine
        upsert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        async with engine.begin() as conn:
            await conn.execute(
                upsert(orm.AccessTag.__table__)
                .values([{"name": t, "is_public": t == PUBLIC} for t in tags])
                .on_conflict_do_nothing(index_elements=["name"])
            )
        self._defined.update(tags)

    async def release(self, proposal: str) -> list[str]:
        """Add the public tag to every record of ``proposal`` (its embargo is over): read
        without login from then on. The keys of the records released."""
        released = []
        found = self._adapter.search(Key("proposal") == proposal)
        for key in await found.keys_range(0, None):
            node = await self._adapter.lookup_adapter([key])
            meta = dict(node.metadata())
            tags = sorted({*meta.get("access_tags", access_tags(meta)), PUBLIC})
            await self._define(tags, again=True)  # not the hot path: made sure of
            meta["access_tags"] = tags
            meta["released_at"] = datetime.now(timezone.utc).isoformat()
            await node.replace_metadata(metadata=meta, access_tags=tags)
            released.append(key)
        return released

    async def update(self, key: str, patch: dict[str, Any]) -> None:
        """Merge ``patch`` into the metadata of the record ``key`` (KeyError: no record)."""
        node = await self._adapter.lookup_adapter([key])
        if node is None:
            raise KeyError(key)
        await node.replace_metadata(metadata={**dict(node.metadata()), **patch})

    async def search(self, **equal: Any) -> list[str]:
        """Keys of the records whose metadata has each ``field=value`` (for checks and tools)."""
        found = self._adapter
        for name, value in equal.items():
            found = found.search(Key(name) == value)
        return list(await found.keys_range(0, None))

    async def count(self) -> int:
        return int(await self._adapter.exact_len())
