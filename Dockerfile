# gitops-kaito reconciler image: non-root, read-only root filesystem friendly (writes only to /var/cache and /tmp).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gitops_kaito ./gitops_kaito
COPY catalog ./catalog
COPY templates ./templates
COPY schemas ./schemas
COPY deploy/crds ./deploy/crds
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532:65532
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["gitops-kaito"]
CMD ["run"]
