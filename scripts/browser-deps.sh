#!/usr/bin/env bash
# Install Debian's headless Chromium and its WebDriver for the dashboard's browser tests.
# Does nothing when both are already there; needs root (or sudo) otherwise.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "browser-deps: chromium and chromium-driver are missing and neither root nor sudo" \
        "is available to install them; the browser tests will be skipped" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
chromium --version
/usr/bin/chromedriver --version
