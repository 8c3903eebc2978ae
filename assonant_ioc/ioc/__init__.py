"""The IOC: caproto control PVs driving the state machine and the steps of an experiment."""
