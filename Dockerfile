# meshdojo's one image: the control plane, the sidecar proxy and the demo apps (docs/kubernetes.md).
#
# Build it with `meshdojo images build`, which assembles the context this file expects:
#   wheels/            every dependency as a wheel, resolved with constraints.txt (the pinned versions)
#   requirements.txt   the dependencies to install from wheels/
#   dist/              meshdojo's own wheel
#   demo-apps/         the demo services (the manifests run them as `python <demo>/app.py ...`)
# so nothing is downloaded while building: a workshop room builds it without a registry or an index.
#
# BASE is any Debian-like image with python3 (3.11 or newer) and its venv module. The default is the
# public slim Python image; `meshdojo images build --base IMAGE` takes another (the tests use a
# Debian made offline with debootstrap and `docker import`).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
COPY requirements.txt /build/requirements.txt
COPY wheels/ /build/wheels/
# the dependencies in a layer of their own: a change to meshdojo's code does not reinstall them
RUN python3 -m venv /opt/meshdojo \
 && /opt/meshdojo/bin/pip install --no-cache-dir --no-index --find-links /build/wheels -r /build/requirements.txt
COPY dist/ /build/dist/
RUN /opt/meshdojo/bin/pip install --no-cache-dir --no-index --no-deps /build/dist/*.whl

FROM ${BASE}
COPY --from=build /opt/meshdojo /opt/meshdojo
COPY demo-apps/ /app/demo-apps/
ENV PATH=/opt/meshdojo/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app/demo-apps
# the control plane's Deployment runs as this user too (runAsNonRoot, a read-only root filesystem)
USER 2103:2103
CMD ["meshdojo", "--help"]
