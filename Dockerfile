# slurm-pod-scheduler container image: build the release binary on Debian bookworm, run it
# on bookworm-slim (glibc) as a non-root user. The binary is the only file of ours in the
# final image; deploy/check-image-binary.sh builds and tests the same binary without Docker.
#
#   docker build -t slurm-pod-scheduler:0.1.0 .

# === build ===
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock; -s strips the symbols (24 MB
# to 19 MB).
RUN cargo build --release --locked -p slurm-pod-scheduler \
 && install -D -s -m 0755 target/release/slurm-pod-scheduler /out/slurm-pod-scheduler

# === run ===
FROM debian:bookworm-slim
# CA certificates, for slurmrestd behind HTTPS (the API server's CA comes from the
# ServiceAccount mount).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/slurm-pod-scheduler /usr/local/bin/slurm-pod-scheduler
# The same numeric user as deploy/base/deployment.yaml, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 10259
ENTRYPOINT ["/usr/local/bin/slurm-pod-scheduler"]
CMD ["run"]
