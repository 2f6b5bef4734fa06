# ratewire: the rating engine and its command line.
# Build: docker build -t ratewire .   Run: docker run --rm ratewire cost --help
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
# numba and rocksdict ship manylinux wheels: no compiler needed
COPY pyproject.toml README.md ./
COPY engine engine
COPY tariffs tariffs
COPY balances balances
COPY billing billing
COPY loadtest loadtest
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim-bookworm
COPY --from=build /install /usr/local
# numba writes its compiled-kernel cache here (the package folder is read-only for the user)
ENV NUMBA_CACHE_DIR=/var/cache/ratewire/numba
RUN useradd --system --create-home ratewire \
    && mkdir -p /var/cache/ratewire/numba /data \
    && chown -R ratewire /var/cache/ratewire /data
USER ratewire
WORKDIR /data
ENTRYPOINT ["ratewire"]
CMD ["--help"]
