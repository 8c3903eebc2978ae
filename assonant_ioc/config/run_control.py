"""The config's settings of what the ESS streaming stack does: ``run_control:`` (commands and
status over Kafka, as the ESS file writer takes them: its topics, service id and status
period) and ``record:`` (the time before start), each bad entry named with its line."""

from __future__ import annotations

import re
from typing import Any

from assonant_ioc.config.parse import KEY_LINES, LINE, Problems, line_of
from assonant_ioc.config.spec import RunControlSettings

_KEYS = {"command_topic", "status_topic", "service_id", "status_every_s"}


def parse_run_control(raw: Any, p: Problems, line: int) -> RunControlSettings:
    """``run_control: {command_topic: ..., status_topic: ..., service_id: ...,
    status_every_s: 5}``; absent: off."""
    if raw is None:
        return RunControlSettings()
    if not isinstance(raw, dict):
        p.add(line, "'run_control' must be a mapping with command_topic and status_topic")
        return RunControlSettings()
    for key in sorted(set(raw) - _KEYS - {LINE, KEY_LINES}):
        p.add(line_of(raw, key) or line, f"unknown run_control setting {key!r}")
    topics = {}
    for key in ("command_topic", "status_topic"):
        topic = str(raw.get(key) or "")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
            p.add(
                line_of(raw, key) or line, f"run_control {key} {topic!r} is not a legal topic name"
            )
        topics[key] = topic
    every = raw.get("status_every_s", 5.0)
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0.1 <= every <= 600:
        p.add(
            line_of(raw, "status_every_s") or line,
            f"run_control status_every_s must be seconds in [0.1, 600], not {every!r}",
        )
        every = 5.0
    return RunControlSettings(
        topics["command_topic"],
        topics["status_topic"],
        str(raw.get("service_id") or ""),
        float(every),
    )


def parse_record(raw: Any, p: Problems, line: int) -> tuple[float, int]:
    """``record: {before_start_s: 10, max_updates: 1000000}``: (seconds, ring capacity)."""
    if raw is None:
        return 0.0, 1_000_000
    if not isinstance(raw, dict):
        p.add(line, "'record' must be a mapping with before_start_s")
        return 0.0, 1_000_000
    for key in sorted(set(raw) - {"before_start_s", "max_updates", LINE, KEY_LINES}):
        p.add(line_of(raw, key) or line, f"unknown record setting {key!r}")
    seconds = raw.get("before_start_s", 0.0)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds <= 600
    ):
        where = line_of(raw, "before_start_s") or line
        p.add(where, f"record before_start_s must be seconds in [0, 600], not {seconds!r}")
        seconds = 0.0
    most = raw.get("max_updates", 1_000_000)
    if isinstance(most, bool) or not isinstance(most, int) or not 1000 <= most <= 100_000_000:
        where = line_of(raw, "max_updates") or line
        p.add(where, f"record max_updates must be a whole number in [1000, 1e8], not {most!r}")
        most = 1_000_000
    return float(seconds), int(most)


def parse_forwarder(raw: Any, p: Problems, line: int) -> tuple[str, ...]:
    """``forwarder: {topics: [motion, sample_env]}``: the topics of ``kafka://`` channels."""
    if raw is None:
        return ()
    topics = raw.get("topics") if isinstance(raw, dict) else None
    if not isinstance(topics, list) or not topics:
        p.add(line, "'forwarder' must be a mapping with topics: [a list of topic names]")
        return ()
    if isinstance(raw, dict):
        for key in sorted(set(raw) - {"topics", LINE, KEY_LINES}):
            p.add(line_of(raw, key) or line, f"unknown forwarder setting {key!r}")
    for topic in topics:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", str(topic)):
            p.add(line_of(raw, "topics") or line, f"forwarder topic {topic!r} is not legal")
    return tuple(str(t) for t in topics)
