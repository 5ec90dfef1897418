#!/usr/bin/env sh
# Install Debian's headless-capable Chromium for the report test (tests/integration/test_report.py).
# Idempotent: does nothing when a chromium binary is already on PATH. Needs root (or sudo) and the apt mirrors;
# where neither is available it exits 0 with a message, and the test skips naming the reason.
set -eu

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-chromium: not root and no passwordless sudo; the report test will skip" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not found (not Debian/Ubuntu); the report test will skip" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium; }; then
    echo "install-chromium: apt-get could not install chromium; the report test will skip" >&2
fi
exit 0
