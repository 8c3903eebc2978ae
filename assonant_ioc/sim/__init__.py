"""A simulated beamline (caproto IOC, and the same records as a C IOC in ``db/``)."""
