#!/usr/bin/env bash
# Install Debian's chromium, chromium-driver and a CJK font for the browser tests when missing.
# Never downloads a browser build: only the distribution's packages, through apt-get.
# The font keeps Chinese text legible in the widget screenshot (docs/widget-screenshot.png).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

has_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && [[ -n "$(fc-list :lang=zh 2>/dev/null)" ]]
}

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] && has_cjk_font; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM or $CHROMEDRIVER is missing and apt-get is not available;" \
        "install Chromium and its matching chromedriver at those paths, or run pytest -m 'not browser'." >&2
    exit 1
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure_chromium: installing chromium needs root (or sudo);" \
            "run: apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi

echo "ensure_chromium: installing Debian chromium, chromium-driver and a CJK font" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    chromium chromium-driver fonts-wqy-microhei

"$CHROMIUM" --version
"$CHROMEDRIVER" --version
