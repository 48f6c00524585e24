#!/usr/bin/env bash
# Install what script jobs' isolation needs (Debian): bubblewrap and libseccomp's Python bindings.
#
# Called by scripts/test.sh and scripts/run.sh. As root it installs what is missing through apt;
# otherwise it says what is missing and exits 0: the instance then refuses script jobs with a clear
# error (sandbox.scripts.confine.unavailable), it never runs them unisolated.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
compgen -G '/usr/lib/python3/dist-packages/seccomp.*.so' >/dev/null || missing+=(python3-seccomp)
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "isolation-deps: ${missing[*]} missing and not installable here (root and apt-get needed): script jobs will be refused" >&2
    exit 0
fi
echo "isolation-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
