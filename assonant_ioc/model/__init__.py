"""Pure domain model: readings, data classes, snapshots and the state machine.

Nothing here imports an I/O library (no caproto, h5py or aiokafka); the edges
import the model, never the other way round.
"""
