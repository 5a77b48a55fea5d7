#!/usr/bin/env bash
# Installs the Debian packages spdit needs; does nothing when all are present.
set -euo pipefail
packages=(
  build-essential cmake git ccache
  libtorch-dev libgloo-dev libopenblas0-pthread
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libpng-dev
  libpcre2-dev libicu-dev libsentencepiece-dev pkg-config
  procps iproute2 clang-format
  libavcodec-dev libavformat-dev libswscale-dev libavutil-dev ffmpeg
  libcpp-httplib-dev chromium
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
