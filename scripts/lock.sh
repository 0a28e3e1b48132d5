#!/usr/bin/env bash
# Regenerates requirements/constraints.txt, the pins `make install` installs with, from
# pyproject's dependencies + the dev and postgres extras. Pins already in the file are kept
# (uv prefers them) unless named in UPGRADE, so a lock only moves what it is asked to:
#   make lock                              # add/remove what pyproject changed, keep the rest
#   make lock UPGRADE="transformers ray"   # lift these to the newest versions pyproject allows
#   make lock UPGRADE=all                  # re-resolve everything
# Torch's CUDA-only dependencies (nvidia-*, triton, cuda-*) are left out: `make install` puts
# the CPU build of torch in first, which needs none of them, and a constraint on them would
# only be noise.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
OUT=${OUT:-requirements/constraints.txt}
UV_VERSION=0.13.9
# The target the suite runs on; the lock does not depend on which machine runs this script.
TARGET=(--python-version 3.11 --python-platform x86_64-manylinux_2_28)

test -x "$VENV/bin/python" || { echo "no $VENV: run make install first" >&2; exit 1; }
"$VENV/bin/uv" --version 2>/dev/null | grep -qF "$UV_VERSION" \
  || "$VENV/bin/pip" install -q "uv==$UV_VERSION"

upgrade=()
for pkg in ${UPGRADE:-}; do
  if [ "$pkg" = all ]; then upgrade+=(--upgrade); else upgrade+=(--upgrade-package "$pkg"); fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f "$OUT" ] && cp "$OUT" "$tmp/all.txt"  # uv reads the output file's pins as preferences
compile() {
  "$VENV/bin/uv" pip compile pyproject.toml --extra dev --extra postgres "${TARGET[@]}" \
    --custom-compile-command "make lock" --quiet ${upgrade[@]+"${upgrade[@]}"} "$@"
}
compile -o "$tmp/all.txt"
# Second pass from the first one's pins (the same resolution), leaving the CUDA stack out.
skip=()
for pkg in $(grep -oE '^(nvidia-[a-z0-9.-]+|triton|cuda-[a-z0-9.-]+)==' "$tmp/all.txt" | tr -d =); do
  skip+=(--no-emit-package "$pkg")
done
cp "$tmp/all.txt" "$tmp/out.txt"
compile ${skip[@]+"${skip[@]}"} -o "$tmp/out.txt"
mkdir -p "$(dirname "$OUT")"
mv "$tmp/out.txt" "$OUT"
echo "wrote $OUT ($(grep -cE '^[A-Za-z0-9]' "$OUT") pins)"
