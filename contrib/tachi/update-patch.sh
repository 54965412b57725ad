#!/usr/bin/env bash
# Writes src/gate-identity.ts into tachi-server.patch, as the file the patch
# adds to Tachi (server/src/server/middleware/gate-identity.ts), after a
# change to it. The patch's other files are Tachi's and are changed by hand
# (see README.md); check-patch.sh then checks the whole.
set -euo pipefail
cd "$(dirname "$0")"

target=server/src/server/middleware/gate-identity.ts
section="$(mktemp)"
trap 'rm -f "$section" tachi-server.patch.new' EXIT

# git diff --no-index exits 1 when the files differ, as they always do here.
{ git diff --no-index --no-color /dev/null src/gate-identity.ts || [ $? -eq 1 ]; } |
    sed -e "s#a/src/gate-identity.ts#a/$target#g" -e "s#b/src/gate-identity.ts#b/$target#g" >"$section"
grep -q "^+++ b/$target\$" "$section"

awk -v start="diff --git a/$target b/$target" -v section="$section" '
    $0 == start { while ((getline line < section) > 0) print line; skipping = 1; found = 1; next }
    skipping && /^diff --git / { skipping = 0 }
    !skipping { print }
    END { if (!found) { print "update-patch: the patch does not add " start > "/dev/stderr"; exit 1 } }
' tachi-server.patch >tachi-server.patch.new
mv tachi-server.patch.new tachi-server.patch
echo "update-patch: tachi-server.patch now adds src/gate-identity.ts as it is" >&2
