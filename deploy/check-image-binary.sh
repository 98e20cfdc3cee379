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
TARGET="${CARGO_TARGET_DIR:-target}"
# The Dockerfile's install step, stripped as in the image.
install -D -s -m 0755 "$TARGET/release/slurm-pod-scheduler" "$TARGET/image/slurm-pod-scheduler"
BIN=$(readlink -f "$TARGET/image/slurm-pod-scheduler")
echo "binary: $BIN ($(du -h "$BIN" | cut -f1))" >&2
SPS_IMAGE_BINARY="$BIN" cargo test -p slurm-pod-scheduler --test deploy image -- --nocapture
