#!/usr/bin/env bash
# Builds colossal-run on the GPU machine against the CUDA LibTorch of its python3 (PyTorch 2.x),
# with the -dev packages from .deps/ (scripts/fetch-device-deps.sh) unpacked into a prefix.
# Usage there: scripts/device-build.sh [ninja targets...]; then `source build-cuda/env.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=${DEPS_PREFIX:-/tmp/deps}
mkdir -p "$deps"
for f in .deps/*.deb; do dpkg -x "$f" "$deps"; done
export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
# The unpacked .pc files still say prefix=/usr.
sed -i "s|^prefix=/usr\$|prefix=$deps/usr|" "$deps"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
export PKG_CONFIG_PATH=$deps/usr/lib/x86_64-linux-gnu/pkgconfig
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUDAToolkit_ROOT=/usr/local/cuda \
  -DPKG_CONFIG_EXECUTABLE="$deps/usr/bin/pkgconf"
ninja -C build-cuda -j "$(nproc)" "$@"
echo "export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:$torch_lib:\${LD_LIBRARY_PATH:-}" > build-cuda/env.sh
