"""Who may write which PV, and the audit line of each write: the ACF's rules applied to every
command and setting PV (a refusal on LastError, a put with callback completed with a failure
status, as rsrv does), status PVs read-only with rsrv's answer, the ACF reloaded on SIGHUP."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from pathlib import Path
from typing import Any

from caproto import AccessRights, ChannelType

from assonant_ioc.errors import CommandRefused, ConfigError
from assonant_ioc.ioc.access import COMMANDS_ASG, SETTINGS_ASG, Access, Policy, load_acf
from assonant_ioc.ioc.ca_server import (
    NO_WRITE_ACCESS,
    PUT_FAILED,
    PUT_NOTIFY,
    push_access_rights,
)
from assonant_ioc.ioc.inputs import (
    command_problem,
    empty_text,
    plain,
    raw_text_problem,
    sent_value,
)

log = logging.getLogger(__name__)

#: user@host of the client whose write is being handled (set around each putter)
WRITER: contextvars.ContextVar[str] = contextvars.ContextVar("writer", default="")
#: how the write came, at the end of its audit line: "" over CA, " (pva)" over PVAccess
VIA: contextvars.ContextVar[str] = contextvars.ContextVar("via", default="")


class WriteGuard:
    """Mixed into the IOC's PV group (which defines what is declared here)."""

    COMMANDS: tuple[str, ...]
    SETTINGS: tuple[str, ...]
    _pvs_: dict[str, Any]
    pvdb: dict[str, Any]
    last_error: Any
    _acf: Path | None
    _policy: Policy | None
    _errors: int

    async def _say(self, message: str) -> None:
        raise NotImplementedError

    async def _error(self, message: str) -> None:
        raise NotImplementedError

    def _guard_writes(self) -> None:
        """Every command and setting PV: access as the ACF says, each accepted write logged
        with who made it, and a refusal caproto makes before a putter runs on LastError."""
        groups = {name: COMMANDS_ASG for name in self.COMMANDS}
        groups |= {name: SETTINGS_ASG for name in self.SETTINGS}
        for attr, prop in self._pvs_.items():
            name = prop.pvspec.name
            if name in groups:
                self._guard(getattr(self, attr), name, groups[name], name in self.COMMANDS)
            elif prop.pvspec.read_only:
                self._read_only(getattr(self, attr), name)

    def _read_only(self, pv: Any, name: str) -> None:
        """A status PV: a put with callback is answered at once with ECA_NOWTACCESS, as
        rsrv answers it (caproto sends an error message its own client never matches, so a
        caproto ``write(wait=True)`` waited out its timeout); a plain put gets the message."""
        original = pv.auth_write

        async def auth_write(
            hostname: str, username: str, data: Any, data_type: Any, metadata: Any, **kw: Any
        ) -> Any:
            log.info(
                "audit: %s@%s wrote %s = %r: refused (read-only)",
                username,
                hostname,
                name,
                sent_value(data),
            )
            if PUT_NOTIFY.get():
                return NO_WRITE_ACCESS
            return await original(hostname, username, data, data_type, metadata, **kw)

        pv.auth_write = auth_write

    def _rights(self, asg: str, host: str | None, user: str | None) -> AccessRights:
        if self._policy is None:
            return AccessRights.READ | AccessRights.WRITE
        access = self._policy.access(asg, host, user)
        if access is Access.WRITE:
            return AccessRights.READ | AccessRights.WRITE
        return AccessRights.READ if access is Access.READ else AccessRights.NO_ACCESS

    def _guard(self, pv: Any, name: str, asg: str, command: bool) -> None:
        original = pv.auth_write
        pv.check_access = lambda host, user: self._rights(asg, host, user)

        async def auth_write(
            hostname: str, username: str, data: Any, data_type: Any, metadata: Any, **kw: Any
        ) -> Any:
            """A refused write: the reason on LastError, and a put with callback completes
            with a failure status (a plain put gets caproto's error message)."""
            who = f"{username}@{hostname}"
            sent = sent_value(data)
            if AccessRights.WRITE not in self._rights(asg, hostname, username):
                denied = f"{who} has no write access ({asg})"
                await self._error(f"{name} refused: {denied}")
                log.info(
                    "audit: %s wrote %s = %r: refused (%s)%s", who, name, sent, denied, VIA.get()
                )
                if PUT_NOTIFY.get():
                    return NO_WRITE_ACCESS
                return await original(hostname, username, data, data_type, metadata, **kw)
            errors = self._errors
            token = WRITER.set(who)
            try:
                why = (
                    command_problem(name, data)
                    if command
                    else raw_text_problem(name, data, data_type)
                )
                if why:
                    await self._error(why)
                    raise CommandRefused(why)
                if command and getattr(data_type, "name", "").endswith("ENUM"):
                    data_type = ChannelType.LONG  # DBR_ENUM 1 is the command's 1, as in rsrv
                if not command and empty_text(data):
                    # caproto cannot convert an empty text to a char waveform (it calls int(''))
                    await pv.write("")
                    result = None
                else:
                    result = await original(hostname, username, data, data_type, metadata, **kw)
            except Exception as err:
                if self._errors == errors:  # refused before a putter ran
                    cause = err if str(err) or err.__cause__ is None else err.__cause__
                    await self._error(
                        f"{name} refused: {plain(data)!r} "
                        f"({getattr(data_type, 'name', data_type)}): "
                        f"{type(cause).__name__}: {cause}"
                    )
                reason = str(self.last_error.value)
                log.info(
                    "audit: %s wrote %s = %r: refused (%s)%s", who, name, sent, reason, VIA.get()
                )
                if PUT_NOTIFY.get():
                    return PUT_FAILED
                raise
            finally:
                WRITER.reset(token)
            log.info("audit: %s wrote %s = %r%s", who, name, sent, VIA.get())
            return result

        pv.auth_write = auth_write

    async def _reload_acf(self) -> None:
        """SIGHUP: read the access security file again; a bad file keeps the old rules. The
        clients' open channels are told their new rights at once, as rsrv does."""
        if self._acf is None:
            log.warning("SIGHUP: no access security file (--acf): nothing to reload")
            return
        try:
            self._policy = await asyncio.to_thread(load_acf, self._acf)
        except ConfigError as err:
            await self._error(f"access security not reloaded, old rules kept: {err}")
            return
        changed = await push_access_rights(self.pvdb)
        await self._say(
            f"access security reloaded from {self._acf}; new rights sent on {changed} channel(s)"
        )
