# One image for every Tarjotin service; the command picks the service and the role:
#   docker run --rm tarjotin:dev python -m services.<catalogue|enrolment|billing|reporting> <migrate|api|worker>
# docker-compose.yml and deploy/k8s/ run it that way. Static checks: scripts/validate_deploy.sh (hadolint).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TARJOTIN_DATA_DIR=/tmp/tarjotin

# A fixed, unprivileged uid/gid so Kubernetes can check runAsNonRoot and volumes can be chowned to it.
RUN groupadd --system --gid 10001 tarjotin \
    && useradd --system --uid 10001 --gid tarjotin --no-create-home --home-dir /app --shell /usr/sbin/nologin tarjotin

WORKDIR /app

# The dependencies are pinned in pyproject.toml; the code is installed editable so that each
# service's Alembic migrations (non-Python files under services/*/migrations) are read from /app.
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir -e . \
    && python -c "import services.catalogue.app, services.enrolment.app, services.billing.app, services.reporting.app"

USER 10001:10001

# APIs 8101-8104, worker metrics 9101-9104 (set by TARJOTIN_<NAME>_HTTP_PORT / _WORKER_METRICS_PORT).
EXPOSE 8101 8102 8103 8104 9101 9102 9103 9104

CMD ["sh", "-c", "echo 'Tarjotin: run python -m services.<catalogue|enrolment|billing|reporting> <migrate|api|worker>; settings come from TARJOTIN_* environment variables.' && exec python -m services.catalogue --help"]
