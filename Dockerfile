# One image for the service and the simulated beamline (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /opt/assonant-ioc
COPY pyproject.toml README.md ./
COPY assonant_ioc ./assonant_ioc
COPY configs ./configs
COPY db ./db
RUN pip install --no-cache-dir . epicscorelibs
ENV EPICS_CA_AUTO_ADDR_LIST=NO
