#!/usr/bin/env bash
# Installs every Debian package colossal-run needs to build, test and run.
# Idempotent: packages already present are left as they are. apt's output goes to a log file
# ($INSTALL_LOG, default build/install.log), whose end is printed if the installation fails.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev            # LibTorch 1.13 (CPU)
  libopenblas0-openmp     # optimized BLAS behind LibTorch (reference BLAS is ~25x slower)
  libopenmpi-dev openmpi-bin
  libyaml-cpp-dev libcli11-dev libfmt-dev nlohmann-json3-dev
  libsentencepiece-dev
  catch2
  libcpp-httplib-dev      # the HTTP server of `colossal-run serve`
  liburing-dev            # io_uring for Gemini's NVMe tier
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

log=${INSTALL_LOG:-build/install.log}
mkdir -p "$(dirname "$log")"
echo "install-deps: installing ${#missing[@]} packages (${missing[*]}) and what they need; log: $log"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
start=$SECONDS
if ! { "${sudo_cmd[@]}" apt-get update &&
       "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 25 "$log" >&2
  echo "install-deps: apt-get failed; the lines above end its log, $log" >&2
  exit 1
fi
echo "install-deps: installed in $((SECONDS - start)) s"
