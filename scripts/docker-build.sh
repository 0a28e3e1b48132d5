#!/usr/bin/env bash
# Build the stack's images on a machine without an image registry (issue 15, item 2):
#   1. the base image ablate-base:bookworm from Debian's archive (mmdebstrap | docker import),
#      unless it exists;
#   2. ablate:latest (docker/Dockerfile) and ablate-postgres:15 (docker/postgres/Dockerfile)
#      with BuildKit, passing the host's extra CA certificates (a proxy that re-signs HTTPS)
#      as an optional build secret, never into a layer.
# Environment: DOCKER (the docker CLI, default docker; needs BuildKit, e.g. Debian's docker.io
# with DOCKER_BUILDKIT=1), DOCKER_HOST as usual, TORCH_WHEEL_DIR (optional: a folder holding
# torch's CPU wheel, used when PyTorch's index is out of reach), EXTRA_CA_DIR (default
# /usr/local/share/ca-certificates). Measured here (2 cores): all three from nothing 281-296 s,
# again with the layers kept 2-3 s, after a source change 16 s.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
export DOCKER_BUILDKIT=1
if ! $DOCKER image inspect ablate-base:bookworm >/dev/null 2>&1; then
  mmdebstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm - | $DOCKER import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' - ablate-base:bookworm
fi
secret=()
ca_dir=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
if compgen -G "$ca_dir/*.crt" >/dev/null; then
  bundle=$(mktemp)
  trap 'rm -f "$bundle"' EXIT
  cat "$ca_dir"/*.crt > "$bundle"
  secret=(--secret "id=extra_ca,src=$bundle")
fi
torch_args=()
if [ -n "${TORCH_WHEEL_DIR:-}" ]; then
  cp "$TORCH_WHEEL_DIR"/torch-*.whl docker/wheels/
  torch_args=(--build-arg TORCH_INDEX_URL=)
fi
$DOCKER build -f docker/Dockerfile "${torch_args[@]}" "${secret[@]}" -t ablate:latest .
$DOCKER build -f docker/postgres/Dockerfile "${secret[@]}" -t ablate-postgres:15 .
