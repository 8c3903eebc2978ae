# One image for the service and the simulated beamline (docker-compose.yml).
#   docker build -t assonant-ioc .
#   docker run --rm -p 5064:5064 -p 5064:5064/udp -v data:/data -v state:/state \
#       assonant-ioc --config sim --no-kafka
# a fixed base (the Python the tests run on), not a floating tag
FROM python:3.11.7-slim-bookworm
WORKDIR /opt/assonant-ioc
COPY pyproject.toml README.md constraints.txt ./
# the example configs and the C IOC's database are package data
COPY assonant_ioc ./assonant_ioc
# the NeXus validators after each write (validate), the data catalog (catalog), the C IOC
# of the sim beamline
# pinned: the versions the tests ran with (constraints.txt)
RUN pip install --no-cache-dir -c constraints.txt ".[validate,catalog]" epicscorelibs \
    && useradd --system --uid 10001 --home-dir /state assonant \
    && mkdir -p /data /state \
    && chown assonant /data /state
ENV EPICS_CA_AUTO_ADDR_LIST=NO \
    XDG_STATE_HOME=/state \
    HDF5_USE_FILE_LOCKING=FALSE
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
