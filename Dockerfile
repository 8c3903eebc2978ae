# Two images from one file (docker-compose.yml builds both):
#   docker build --target ioc -t assonant-ioc .          the IOC and the simulated beamline
#   docker build --target catalog -t assonant-catalog .  the data catalog and the processing
#   docker run --rm -p 5064:5064 -p 5064:5064/udp -v data:/data -v state:/state \
#       assonant-ioc --config sim --no-kafka
# The IOC's image carries no catalog packages (tiled, FastAPI, SQLAlchemy, Dask); the
# catalog's carries no EPICS server.
# a fixed base (the Python the tests run on), not a floating tag
FROM python:3.11.7-slim-bookworm AS base
WORKDIR /opt/assonant-ioc
COPY pyproject.toml README.md constraints.txt ./
# the example configs and the C IOC's database are package data
COPY assonant_ioc ./assonant_ioc
RUN useradd --system --uid 10001 --home-dir /state assonant \
    && mkdir -p /data /state \
    && chown assonant /data /state
ENV XDG_STATE_HOME=/state \
    HDF5_USE_FILE_LOCKING=FALSE

# the data catalog: the consumer (catalog consume), tiled's server (catalog serve), the
# processing (process) and its page (page)
FROM base AS catalog
# pinned: the versions the tests ran with (constraints.txt)
RUN pip install --no-cache-dir -c constraints.txt ".[catalog,process,page]"
USER assonant
# tiled's server, the consumer's status and metrics
EXPOSE 8000/tcp 8001/tcp
VOLUME ["/data", "/state"]
ENTRYPOINT ["assonant-ioc"]
CMD ["catalog", "--help"]

# the IOC, last so that a plain `docker build .` builds it
FROM base AS ioc
# the NeXus validators after each write (validate), the C IOC of the sim beamline (sim)
# pinned: the versions the tests ran with (constraints.txt)
RUN pip install --no-cache-dir -c constraints.txt ".[validate,sim]"
ENV EPICS_CA_AUTO_ADDR_LIST=NO
USER assonant
# Channel Access (the IOC's server, TCP and UDP; beacons and the repeater on 5065)
EXPOSE 5064/tcp 5064/udp 5065/udp
# the files, and the settings, experiment in progress and undelivered events
VOLUME ["/data", "/state"]
# healthy while the IOC answers and its heartbeat moves (ASSONANT_PREFIX: its PV prefix)
ENV ASSONANT_PREFIX=SIM:ASSONANT:
HEALTHCHECK --interval=30s --timeout=10s --retries=3 \
    CMD ["python", "-m", "assonant_ioc.ioc.healthcheck"]
ENTRYPOINT ["assonant-ioc"]
CMD ["--help"]
