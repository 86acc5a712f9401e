#!/usr/bin/env bash
# Makes sure the Cortex-M toolchain and QEMU that `nachos-tf firmware` and its tests use are on this machine:
# Debian packages gcc-arm-none-eabi, libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib, qemu-system-arm.
# As root: apt-get install (an install that fails is an error). Otherwise: name what is missing and go on
# (the firmware tests then skip and say why).
set -euo pipefail
PKGS="gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
have() {
  command -v arm-none-eabi-g++ >/dev/null 2>&1 && command -v qemu-system-arm >/dev/null 2>&1 || return 1
  case "$(arm-none-eabi-gcc -print-file-name=librdimon.a)" in /*) ;; *) return 1 ;; esac
  case "$(arm-none-eabi-g++ -print-file-name=libstdc++.a)" in /*) ;; *) return 1 ;; esac
}
if have; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Cortex-M toolchain or QEMU missing: installing $PKGS ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq $PKGS >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq $PKGS >/dev/null; } \
    || { echo "error: could not install $PKGS" >&2; exit 1; }
  have || { echo "error: $PKGS installed but arm-none-eabi-g++ / newlib / qemu-system-arm not usable" >&2; exit 1; }
  echo "Cortex-M toolchain and QEMU ready."
else
  echo "note: the Cortex-M toolchain or QEMU is missing and this is not root: install $PKGS" \
       "to build and run firmware (its tests skip until then)." >&2
fi
