#!/usr/bin/env bash
# Downloads the Debian packages the GPU machine lacks (it has no package registry) into .deps/,
# which git ignores; the device run carries that folder and scripts/device-build.sh unpacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps
cd .deps
apt-get download libyaml-cpp-dev libyaml-cpp0.7 libfmt-dev libfmt9 libcli11-dev nlohmann-json3-dev catch2 \
  libsentencepiece-dev libsentencepiece0 libprotobuf-dev libprotobuf32 libprotobuf-lite32 pkg-config libpkgconf3 pkgconf pkgconf-bin \
  liburing-dev liburing2
