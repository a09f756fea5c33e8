# syntax=docker/dockerfile:1
# The controller's image for Docker / BuildKit users (scripts/image builds the same image without
# Docker, with buildah). A static binary (musl) in an image FROM scratch: no shell, no package
# manager, non-root.
#
#   docker build -t sagemaker-processing-controller:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker buildx build --platform linux/arm64 ...     # Graviton (native arm64 builder or QEMU)
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The C parts of aws-lc and ring compile with musl-gcc.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /triple \
 && rustup target add "$(cat /triple)"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile image --target "$(cat /triple)" --bin sagemaker-processing-controller \
 && mkdir /out \
 && cp "target/$(cat /triple)/image/sagemaker-processing-controller" /out/

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/sagemaker-processing-controller/sagemaker-processing-controller
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/sagemaker-processing-controller /sagemaker-processing-controller
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
LABEL org.opencontainers.image.title="sagemaker-processing-controller" \
      org.opencontainers.image.description="Kubernetes controller that validates a job's VPC network and runs Amazon SageMaker Processing Jobs" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/sagemaker-processing-controller"]
CMD ["run"]
