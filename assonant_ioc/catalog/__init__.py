"""The data catalog: ``file_written`` events in (Kafka), one tiled record per file out.

record (pure) -> store (tiled) <- consumer (aiokafka) | backfill (nexus_meta, h5py)
"""
