#!/usr/bin/env bash
# Builds the exact binary the container image carries (the Dockerfile's build stage runs
# the same command) and runs tests/deploy.rs's image checks on it: --help, run --help,
# explain on deploy/examples/, its shared libraries and glibc symbol versions against
# Debian bookworm's glibc 2.36. No Docker engine needed; the image itself is not built.
#
#   deploy/check-image-binary.sh          # CARGO_TARGET_DIR is honoured
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
cargo build --release --locked -p slurm-pod-scheduler
BIN="${CARGO_TARGET_DIR:-target}/release/slurm-pod-scheduler"
echo "binary: $BIN ($(du -h "$BIN" | cut -f1))" >&2
SPS_IMAGE_BINARY="$(readlink -f "$BIN")" cargo test -p slurm-pod-scheduler --test deploy image -- --nocapture
