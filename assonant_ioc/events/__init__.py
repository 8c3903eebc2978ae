"""Events: what the service tells the facility after a file is written (schema, and the sender)."""

from assonant_ioc.events.message import EVENT_SCHEMA_PATH, EVENT_SCHEMA_VERSION, file_written_event

__all__ = ["EVENT_SCHEMA_PATH", "EVENT_SCHEMA_VERSION", "file_written_event"]
