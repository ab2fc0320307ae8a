#!/bin/sh
# Installs every Debian 12 package netdiffd needs to build, test and benchmark.
# Run as root (CI and the README's first command do). Idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="build-essential pkg-config clang-14 libclang-rt-14-dev llvm-14 \
  libpcap-dev libpng-dev zlib1g-dev libjansson-dev libmicrohttpd-dev libopenblas-dev \
  tshark wireshark-common tcpreplay python3 python3-scapy iproute2 curl prometheus time"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
