#!/usr/bin/env bash
# System packages the tests and the demo need beyond Python: a font with Chinese glyphs for
# chat charts (the charts name departments such as 信贷部). Installs them with apt when missing.
set -euo pipefail

have_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]
}

if have_cjk_font; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: no Chinese font found and no apt-get; install a CJK font (e.g. WenQuanYi Micro Hei) or set CLAWFED_CJK_FONT" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "system-deps: installing fonts-wqy-microhei (Chinese font for chat charts)" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    fontconfig fonts-wqy-microhei >/dev/null
have_cjk_font || { echo "system-deps: font installed but fc-list finds no Chinese font" >&2; exit 1; }
