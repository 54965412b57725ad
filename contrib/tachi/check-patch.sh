#!/usr/bin/env bash
# Checks tachi-server.patch against a Tachi checkout (a git clone of
# zkrising/Tachi): that it applies to the commit it was written for, and that
# Tachi's server type-checks with it, as Tachi's own `pnpm typecheck` does.
#
#   contrib/tachi/check-patch.sh [--keep] <path to a Tachi checkout>
#
# The checkout must be at that commit (named in the patch's first lines) with
# the patched files unmodified. The patch is applied in place, the server's
# packages are installed with pnpm 8 (Tachi's; through npx when pnpm is not
# installed), tachi-common is built and the server type-checked; then the
# patch is taken out again, unless --keep is given. The packages' install
# scripts are skipped: none is needed to type-check, and some download
# prebuilt binaries.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
patch="$here/tachi-server.patch"

keep=no
if [ "${1:-}" = "--keep" ]; then
    keep=yes
    shift
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 [--keep] <path to a Tachi checkout>" >&2
    exit 2
fi
tachi="$(cd "$1" && pwd)"

commit="$(sed -n 's/^Against zkrising\/Tachi at commit \([0-9a-f]\{40\}\)\.$/\1/p' "$patch")"
if [ -z "$commit" ]; then
    echo "check-patch: $patch names no Tachi commit" >&2
    exit 1
fi

say() { echo "check-patch: $*" >&2; }

cd "$tachi"
head="$(git rev-parse HEAD)"
if [ "$head" != "$commit" ]; then
    say "$tachi is at $head; the patch is written against $commit (git checkout $commit)"
    exit 1
fi

pnpm_cmd=(pnpm)
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version | cut -d. -f1)" != 8 ]; then
    pnpm_cmd=(npx --yes pnpm@8.15.9)
fi

applied=no
revert() {
    if [ "$applied" = yes ] && [ "$keep" = no ]; then
        git apply -R "$patch"
        say "patch taken out again"
    fi
}
trap revert EXIT

say "git apply --check (Tachi $commit)"
git apply --check "$patch"
git apply "$patch"
applied=yes
say "applies"

say "installing tachi-server's packages (${pnpm_cmd[*]} install --frozen-lockfile)"
"${pnpm_cmd[@]}" install --filter "tachi-server..." --ignore-scripts --frozen-lockfile --reporter=append-only >/dev/null

say "building tachi-common (tsc -b)"
(cd common && ./node_modules/.bin/tsc -b)

say "type-checking tachi-server (tsc --project tsconfig.build.json --noEmit)"
(cd server && ./node_modules/.bin/tsc --project tsconfig.build.json --noEmit)

say "OK: the patch applies to $commit and tachi-server type-checks with it"
if [ "$keep" = yes ]; then
    say "the patch stays applied (--keep)"
fi
