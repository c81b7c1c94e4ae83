# syntax=docker/dockerfile:1
# alertbridge: build with `make image` (tags the image the Helm chart expects,
# ghcr.io/alertbridge/alertbridge:<version>), run with the config
# mounted at /etc/alertbridge/config.toml and a volume on /data (see
# helm/alertbridge for Kubernetes).
#
# Two stages: the build stage installs the pinned dependencies and the
# alertbridge wheel into a virtualenv; the runtime stage copies only that
# virtualenv (no pip, hatchling or build caches). Both stages use the same base
# image so the virtualenv's Python path is the same. Update the tag (and add
# @sha256:… when your registry lets you pin it) together with requirements.lock.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# A virtualenv without pip: the base image's pip installs into it (--python).
RUN python -m venv --without-pip /opt/alertbridge
WORKDIR /src
# Dependencies first, from the lock, so that a change to alertbridge's code
# reuses this layer.
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip --python /opt/alertbridge/bin/python install --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY alertbridge/ alertbridge/
COPY templates/ templates/
# --no-deps: everything came from the lock; `pip check` fails the build when
# the lock no longer satisfies pyproject.toml.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip --python /opt/alertbridge/bin/python install --no-deps . \
    && pip --python /opt/alertbridge/bin/python check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="alertbridge" \
      org.opencontainers.image.description="Prometheus Alertmanager and Grafana alerts to WeCom, with ack and silence from WeCom" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/alertbridge /opt/alertbridge
# /data is the only directory alertbridge writes (the SQLite store and its
# temporary files, via TMPDIR): the root filesystem may be read-only. Owned by
# the numeric user below, which Kubernetes can check against runAsNonRoot.
RUN install --directory --owner=65532 --group=65532 --mode=0750 /data
ENV PATH=/opt/alertbridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/data
USER 65532:65532
# The default store url, sqlite:///./data/alertbridge.db, is relative to this
# directory: /data/alertbridge.db.
WORKDIR /
VOLUME ["/data"]
EXPOSE 8080
# For docker and compose only: Kubernetes ignores it and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["alertbridge"]
CMD ["serve", "-c", "/etc/alertbridge/config.toml"]
