#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module (each `func FuzzX(f *testing.F)`
# in a _test.go file, found anew on every run) one after the other, for
# FUZZTIME each (a Go duration such as 5s, or a count such as 1000x; default
# 5s), and prints one line per target with the executions. It exits 1 if any
# target failed, after running them all.
#
# A failing input is written by `go test` to the package's
# testdata/fuzz/<FuzzX>/: commit it with the fix, and it is a seed that every
# `go test` of the package runs from then on.
#
#   FUZZTIME=60s scripts/fuzz.sh            every target for a minute
#   scripts/fuzz.sh FuzzRESP                the targets named (regexps)
#   FUZZPARALLEL=1 scripts/fuzz.sh          one fuzzing worker (default GOMAXPROCS)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
parallel=()
if [[ -n "${FUZZPARALLEL:-}" ]]; then
	parallel=(-parallel "$FUZZPARALLEL")
fi

# "dir name" per target, sorted; testdata and .git are not searched.
mapfile -t targets < <(
	grep -rE --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git \
		'^func Fuzz[A-Za-z0-9_]*\(' . |
		sed -E 's|^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|; s|^\./[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|. \1|' |
		sort -u
)
if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=0
ran=0
for t in "${targets[@]}"; do
	dir=${t% *}
	name=${t#* }
	if [[ $# -gt 0 ]]; then
		match=0
		for want in "$@"; do
			if [[ $name =~ $want ]]; then match=1; fi
		done
		[[ $match -eq 1 ]] || continue
	fi
	ran=$((ran + 1))
	start=$SECONDS
	status=ok
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "${parallel[@]}" "./$dir" >"$out" 2>&1; then
		status=FAIL
		failed=1
	fi
	# The last progress line: "fuzz: elapsed: 5s, execs: 12345 (2469/sec), ...".
	execs=$(sed -nE 's/^fuzz: elapsed: [^,]*, execs: ([0-9]+) .*/\1/p' "$out" | tail -n 1)
	printf '%-4s %-28s ./%-20s %10s execs in %ds\n' "$status" "$name" "$dir" "${execs:-?}" $((SECONDS - start))
	if [[ $status == FAIL ]]; then
		sed 's/^/    /' "$out"
		echo "    (a failing input the fuzzer found is in ./$dir/testdata/fuzz/$name/: commit it with the fix)"
	fi
done
if [[ $ran -eq 0 ]]; then
	echo "fuzz: no fuzz target matches $*" >&2
	exit 1
fi
exit $failed
