#!/usr/bin/env bash
# Runs every fuzz target in the tree, one after another. test.sh runs it
# briefly so the targets stay green; `make fuzz` runs it longer.
#
# Each budget is a count of inputs (about 5 s of fuzzing on a 2-core
# machine), not a duration: with a duration, Go before 1.27 can fail a
# target with a bare "context deadline exceeded" when its deadline races a
# worker's last input (go.dev/issue/75804); a count has no deadline.
#   FUZZ_SCALE=N  multiplies every budget (default 1)
#   FUZZTIME=T    replaces every budget (a count such as 1000000x, or a
#                 duration such as 60s despite the above)
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${FUZZ_SCALE:-1}

targets=(
	"./internal/pxename FuzzParse 300000"
	"./internal/pxename FuzzParseGRUB 250000"
	"./internal/render FuzzRender 120000"
	"./internal/ethers FuzzParse 150000"
	"./internal/node FuzzParse 120000"
	"./internal/install FuzzParsePath 50000"
)

# A fuzz target added to the code but not to the list above would never be
# fuzzed: refuse to run until it is listed.
listed=$(printf '%s\n' "${targets[@]}" | awk '{sub("^\\./", "", $1); print $1 " " $2}' | sort)
found=$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . |
	sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' | sort -u)
if [ "$listed" != "$found" ]; then
	echo "fuzz.sh: the list of fuzz targets differs from the code's:" >&2
	diff <(echo "$listed") <(echo "$found") >&2 || true
	exit 1
fi

for t in "${targets[@]}"; do
	read -r pkg name budget <<<"$t"
	go test -run '^$' -fuzz "^$name\$" -fuzztime "${FUZZTIME:-$((budget * scale))x}" "$pkg"
done
