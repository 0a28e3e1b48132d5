#!/usr/bin/env bash
# `make test-docker`: the compose stack built and run for real (issue 15, item 2), on a machine
# with no systemd and no image registry:
#   1. docker.io and mmdebstrap from Debian if missing (needs root);
#   2. a dockerd of this script's own (its socket, pid and exec dirs in a temp dir), stopped
#      by its PID on exit; its data root persists ($ABLATE_DOCKERD_ROOT, default
#      $XDG_CACHE_HOME/ablate/dockerd) so a later run reuses the images' unchanged layers;
#   3. the images (scripts/docker-build.sh), torch's CPU wheel fetched by the host's pip where
#      its configuration can (a local wheel folder), else from PyTorch's CPU index in the build;
#   4. the tests marked `docker` (tests/docker/test_compose_e2e.py) against that daemon.
# DOCKER_HOST set and answering: steps 1-2 are skipped and that daemon is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

if [ -z "${DOCKER_HOST:-}" ]; then
  need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
fi
# Debian's docker CLI has BuildKit built in; a newer CLI without the buildx plugin refuses
# DOCKER_BUILDKIT=1.
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER

run_dir=$(mktemp -d /tmp/ablate-dockerd.XXXXXX)
dockerd_pid=
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$run_dir"
}
trap cleanup EXIT

if [ -z "${DOCKER_HOST:-}" ]; then
  root=${ABLATE_DOCKERD_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/ablate/dockerd}
  mkdir -p "$root"
  dockerd --data-root "$root" --exec-root "$run_dir/exec" --pidfile "$run_dir/dockerd.pid" \
    -H "unix://$run_dir/docker.sock" >"$run_dir/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$run_dir/docker.sock"
fi
for _ in $(seq 120); do
  $DOCKER info >/dev/null 2>&1 && break
  if [ -n "$dockerd_pid" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
    echo "dockerd exited:"; tail -20 "$run_dir/dockerd.log"; exit 1
  fi
  sleep 0.5
done
$DOCKER info >/dev/null
echo "docker daemon: $($DOCKER version --format '{{.Server.Version}}') at $DOCKER_HOST"

# torch's CPU wheel, as the host's pip finds it (its find-links or index); none is fine.
wheels="$run_dir/wheels"
if "$PYTHON" -m pip download -q --no-deps --only-binary :all: -d "$wheels" "torch==2.13.0+cpu" \
    2>/dev/null; then
  export TORCH_WHEEL_DIR="$wheels"
fi

start=$(date +%s)
bash scripts/docker-build.sh
echo "images built in $(( $(date +%s) - start )) s"
status=0
"$PYTHON" -m pytest -q -ra -m docker tests/docker "$@" || status=$?
# Leave the persistent data root no bigger than one set of images and their build cache.
$DOCKER image prune -f >/dev/null || true
exit "$status"
