#!/usr/bin/env bash
# Refresh the web console's message catalogues after changing its strings:
#   1. extract every string of sandbox/console (Python and templates) into a template (not kept),
#   2. update sandbox/console/translations/{zh_Hans_CN,en}/LC_MESSAGES/messages.po from it,
#   3. fill the English catalogue's new entries with their source text (the strings are English),
#   4. compile both to messages.mo, which are committed so that a fresh clone works.
# Then translate the new zh_Hans_CN entries by hand and run it again to compile them.
# tests/sandbox/console/test_translations.py fails on any string missing or empty in either
# catalogue, and on a messages.mo that is not the compiled messages.po.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pot=$(mktemp --suffix=.pot)
trap 'rm -f "$pot"' EXIT
dir=sandbox/console/translations
.venv/bin/pybabel -q extract -F sandbox/console/babel.cfg -k _l --no-location --sort-output --omit-header -o "$pot" sandbox/console
for lang in zh_Hans_CN en; do
    if [[ -f $dir/$lang/LC_MESSAGES/messages.po ]]; then
        .venv/bin/pybabel -q update --no-fuzzy-matching --ignore-obsolete -i "$pot" -d "$dir" -l "$lang"
    else
        .venv/bin/pybabel -q init -i "$pot" -d "$dir" -l "$lang"
    fi
done
.venv/bin/python - "$dir/en/LC_MESSAGES/messages.po" <<'PY'
import sys
from babel.messages.pofile import read_po, write_po

path = sys.argv[1]
with open(path, "rb") as handle:
    catalogue = read_po(handle, locale="en")
for message in catalogue:
    if message.id and not message.string:
        message.string = message.id
with open(path, "wb") as handle:
    write_po(handle, catalogue, sort_output=True, include_lineno=False)
PY
.venv/bin/pybabel -q compile -d "$dir"
