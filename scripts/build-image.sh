#!/usr/bin/env bash
# Builds the image of scripts/container/Dockerfile without a registry or a Docker daemon:
# mmdebstrap makes the Debian bookworm base from Debian's mirror, podman imports it, and podman
# builds the Dockerfile on it (its RUN steps are scripts/install-deps.sh and scripts/build.sh).
# Usage, as root: scripts/build-image.sh [IMAGE]   (default localhost/colossal-run:latest). It ends
# by running `colossal-run --version` in the image and printing the podman flags it ran with.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-localhost/colossal-run:latest}
base=localhost/colossal-run-base:bookworm
work=${BUILD_DIR:-build}/image
mkdir -p "$work"

tools=(mmdebstrap podman runc)
missing=()
for t in "${tools[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  echo "build-image: installing ${missing[*]} (log: $work/install.log)"
  if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           "${missing[@]}"; } >"$work/install.log" 2>&1; then
    tail -n 20 "$work/install.log" >&2
    echo "build-image: installing ${missing[*]} failed; the lines above end $work/install.log" >&2
    exit 1
  fi
fi

# runc, not crun: crun refuses hosts whose cgroups mix v1 and v2. The limits are the host's own
# (asking for more than the host allows, as the defaults do, fails in containers started
# inside unprivileged sandboxes).
flags=(--runtime runc --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 --network host)

start=$SECONDS
echo "build-image: [1/3] Debian bookworm base from the mirror (log: $work/mmdebstrap.log)"
if ! mmdebstrap --variant=minbase bookworm "$work/base.tar" >"$work/mmdebstrap.log" 2>&1; then
  tail -n 20 "$work/mmdebstrap.log" >&2
  echo "build-image: mmdebstrap failed; the lines above end $work/mmdebstrap.log" >&2
  exit 1
fi
podman import --quiet "$work/base.tar" "$base" >/dev/null
rm -f "$work/base.tar"
echo "build-image: [2/3] podman build -f scripts/container/Dockerfile (packages, then colossal-run)"
podman build "${flags[@]}" --from "$base" -f scripts/container/Dockerfile -t "$image" .
echo "build-image: [3/3] checking the image"
podman run --rm "${flags[@]}" "$image" colossal-run --version
echo "build-image: $image built in $((SECONDS - start)) s; run it with: podman run --rm ${flags[*]} $image"
