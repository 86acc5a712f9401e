#!/usr/bin/env bash
# Makes sure the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist) are on this machine.
# As root: apt-get install. Otherwise: apt-get download + dpkg -x into the user cache that
# nachos_tf.data searches (~/.cache/nachos-tf/fashion-mnist). NACHOS_DATA holding the files: nothing to do
# (nachos_tf.data looks there first, then in the two folders above). Every failure ends in one "error:" line.
set -euo pipefail
SYS=/usr/share/datasets/fashion-mnist
CACHE="${HOME}/.cache/nachos-tf/fashion-mnist"
have() { [ -f "$1/train-images-idx3-ubyte.gz" ] && [ -f "$1/t10k-labels-idx1-ubyte.gz" ]; }
if [ -n "${NACHOS_DATA:-}" ] && { have "$NACHOS_DATA" || have "$NACHOS_DATA/fashion-mnist" \
    || have "$NACHOS_DATA/fashion_mnist"; }; then exit 0; fi
if have "$SYS" || have "$CACHE$SYS"; then exit 0; fi
echo "Fashion-MNIST not found: installing the Debian package dataset-fashion-mnist ..."
if [ "$(id -u)" = "0" ]; then
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
else
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>"$tmp/apt.log") \
    || { echo "error: apt-get download dataset-fashion-mnist failed ($(tail -n 1 "$tmp/apt.log"))" >&2; exit 1; }
  mkdir -p "$CACHE"
  dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$CACHE"
fi
have "$SYS" || have "$CACHE$SYS" || { echo "error: could not install Fashion-MNIST (dataset-fashion-mnist)" >&2; exit 1; }
echo "Fashion-MNIST ready."
