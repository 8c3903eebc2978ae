"""A small HTTP endpoint for a service's monitoring (no framework): ``/metrics`` in
Prometheus' text format, ``/health`` (200 healthy, 503 not, with the reason), and any other
paths the service gives (its JSON status); anything else is 404."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping

#: one metric: (name, type "gauge" or "counter", help, [(labels, value)])
Metric = tuple[str, str, str, list[tuple[Mapping[str, str], float]]]


def exposition(metrics: list[Metric]) -> bytes:
    """Prometheus' text exposition format (version 0.0.4)."""
    lines = []
    for name, kind, text, samples in metrics:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            said = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            number = "NaN" if math.isnan(value) else repr(float(value))
            lines.append(f"{name}{{{said}}} {number}" if said else f"{name} {number}")
    return ("\n".join(lines) + "\n").encode()


async def _drop(reader: asyncio.StreamReader, most: int) -> None:
    while most > 0 and (data := await reader.read(1 << 16)):
        most -= len(data)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


async def serve(
    host: str,
    port: int,
    metrics: Callable[[], list[Metric]],
    health: Callable[[], str],
    others: Mapping[str, Callable[[], tuple[str, bytes]]] | None = None,
) -> asyncio.Server:
    """``health()`` returns "" when healthy, else why not (a 503 with that text)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            except asyncio.LimitOverrunError:  # a head past the stream's limit (64 KiB)
                writer.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                await writer.drain()
                # what is left of it read (a few MB, 2 s at most) and dropped: a close with
                # unread data would reset the connection, and the client lose the answer
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_drop(reader, 8 << 20), 2)
                return
            parts = head.split(b" ", 2)
            path = parts[1].decode(errors="replace").split("?", 1)[0] if len(parts) > 1 else "/"
            code, kind, body = "200 OK", "text/plain; charset=utf-8", b""
            if path == "/metrics":
                kind = "text/plain; version=0.0.4; charset=utf-8"
                body = exposition(metrics())
            elif path == "/health":
                why = health()
                code = "200 OK" if not why else "503 Service Unavailable"
                body = (why or "ok").encode() + b"\n"
            elif others and path in others:
                kind, body = others[path]()
            else:
                code, body = "404 Not Found", b"paths: /metrics, /health\n"
            writer.write(
                f"HTTP/1.1 {code}\r\nContent-Type: {kind}\r\n".encode()
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


async def serve_status(
    host: str,
    port: int,
    status: Callable[[], bytes],
    metrics: Callable[[], list[Metric]],
    health: Callable[[], str],
) -> asyncio.Server:
    """``serve`` with the service's counts as JSON on ``/status`` (and ``/``)."""

    def as_json() -> tuple[str, bytes]:
        return "application/json", status()

    return await serve(host, port, metrics, health, {"/status": as_json, "/": as_json})
