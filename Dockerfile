# syntax=docker/dockerfile:1
# kvq-server container image.
#
#   docker build -t kvq-server:0.1.0 .
#   docker run --gpus all -p 50051:50051 -p 9400:9400 kvq-server:0.1.0 [flags...]
#
# Stage "build" compiles with the CUDA 13 toolkit through the same scripts CI
# runs (scripts/setup, scripts/build); the final stage is the matching CUDA
# runtime image with only the shared libraries kvq-server and kvqctl load.
# Every server flag can be set as an argument or as an environment variable
# KVQ_<FLAG> (KVQ_POOL_BYTES=...); arguments win.

ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# Dependencies first, so that this layer survives source changes.
COPY scripts/setup scripts/
RUN ./scripts/setup --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
# CUDA is required here (AUTO would silently build a CPU-only server).
# CUDA_ARCHITECTURES: the GPUs to compile for (80 = A100, 90 = H100/H200).
ARG CUDA_ARCHITECTURES="80;90"
ENV KVQ_BUILD_CUDA=ON \
    KVQ_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}"
RUN --mount=type=cache,target=/root/.cache/ccache \
    ./scripts/build kvq-server kvqctl \
    && install -D -m 0755 -t /out/bin build/bin/kvq-server build/bin/kvqctl

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Runtime libraries of Ubuntu 24.04's gRPC 1.51, protobuf 3.21, Abseil
# 20220623, spdlog 1.12, cpp-httplib 0.14 and jemalloc 5.3: the versions the
# build stage linked. Versions are not pinned: the base image fixes the
# release, and the archive drops superseded versions, which would break
# rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libgrpc++1.51t64 libgrpc29t64 libprotobuf32t64 libabsl20220623t64 \
       libspdlog1.12 libfmt9 libcpp-httplib0.14t64 libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/ /usr/local/bin/
# Fail the build, not the first start, if a shared library is missing
# (libcuda comes from the host's driver at run time).
RUN ldd /usr/local/bin/kvq-server /usr/local/bin/kvqctl \
    | awk '/not found/ && !/libcuda\.so/ { print; bad = 1 } END { exit bad }'

# Flags as environment: listen on all interfaces inside the container.
ENV KVQ_LISTEN=0.0.0.0:50051 \
    KVQ_METRICS_LISTEN=0.0.0.0:9400 \
    KVQ_DEVICE=auto
# The image's "ubuntu" user (UID 1000), numeric so that Kubernetes can verify
# runAsNonRoot.
USER 1000:1000
WORKDIR /home/ubuntu
EXPOSE 50051 9400
# gRPC health (grpc.health.v1) through kvqctl: healthy only while SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["kvqctl", "--server=127.0.0.1:50051", "--deadline_ms=3000", "health"]
# SIGTERM: the server reports NOT_SERVING, drains in-flight RPCs for up to
# --shutdown_grace_seconds and exits 0 (at most a second after the grace).
STOPSIGNAL SIGTERM
ENTRYPOINT ["kvq-server"]
