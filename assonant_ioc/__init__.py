"""assonant-ioc: beamline metadata per acquisition moment, as NeXus files and Kafka events.

Data flow (one package per step)::

    config -> monitor (CA client) -> model (snapshots, data classes)
           -> nexus (h5py writer) -> file on disk
           -> events (aiokafka)   -> Kafka topic
    ioc (caproto control PVs) -> model.state (state machine) -> drives the steps above
"""

__version__ = "0.1.0"
