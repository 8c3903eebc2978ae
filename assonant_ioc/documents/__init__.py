"""Bluesky runs in: a RunEngine's documents to the same NeXus file, event and catalog record.

The data flow: documents (in process, or from Kafka) -> :mod:`.run` (one run's documents,
checked, without repeats) -> :mod:`.journal` (durable as they arrive) -> :mod:`.mapping`
(the moments' captures, the frames) -> the shared build (``lifecycle.build``), outbox and
delivery (:mod:`.writer`).
"""
