#!/usr/bin/env bash
# Install what the web console's browser test needs (Debian): Chromium, and a CJK font for its
# screenshots. Playwright (requirements-dev.txt) drives this Chromium and never downloads a browser.
#
# Called by scripts/test.sh. As root it installs what is missing through apt; otherwise it says what
# is missing and exits 0: the browser test then skips (and fails under CI=true).
set -euo pipefail

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
# WenQuanYi Micro Hei: a small CJK font (fonts-noto-cjk serves as well, when present).
fc-list :lang=zh 2>/dev/null | grep -q . || missing+=(fonts-wqy-microhei)
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "console-deps: ${missing[*]} missing and not installable here (root and apt-get needed): the browser test will skip" >&2
    exit 0
fi
echo "console-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" fontconfig >&2
