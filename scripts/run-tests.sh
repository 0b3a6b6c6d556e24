#!/usr/bin/env bash
# Runs the workspace's tests (already built: `cargo test --workspace --no-run`), the
# integration test binaries TEST_JOBS (3) at a time. Most of those tests wait rather than
# compute — for a broker to start, a reservation to lapse, a killed server's partitions to
# move — so two cores run three of them in little more than the time of the longest.
#
# Every run is `cargo test --workspace ...`, so features resolve as in the build and nothing
# is compiled again. The unit tests run first; then the integration tests, by target name,
# the largest files first (they are the long ones), each printing its whole output when it
# ends. Exits non-zero if any test failed, after every one has run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

jobs=${TEST_JOBS:-3}
out=$(mktemp -d -t sneakerstop-tests.XXXXXX)
trap 'rm -rf "$out"' EXIT

failed=""
log "unit tests"
cargo test --workspace --lib --bins --no-fail-fast || failed="unit tests"
cargo test --workspace --doc --no-fail-fast 2>&1 | grep -v '^$' | grep -v '^running 0 tests' | grep -v 'test result: ok. 0 passed' || true

# Every integration test target (tests/*.rs) in the workspace, largest file first. A name
# shared by several packages (`http`) runs all of them in one job.
targets=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, os, sys
sizes = {}
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "test" in target["kind"]:
            sizes[target["name"]] = sizes.get(target["name"], 0) + os.path.getsize(target["src_path"])
print("\n".join(sorted(sizes, key=lambda name: -sizes[name])))')
count=$(wc -w <<<"$targets")
log "integration tests: $count targets, $jobs at a time"

export out
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c '
  started=$SECONDS
  if cargo test --workspace --test "$1" --no-fail-fast >"$out/$1.log" 2>&1; then echo ok >"$out/$1.rc"; else echo failed >"$out/$1.rc"; fi
  # One job prints at a time, so outputs do not interleave.
  {
    flock 9
    printf "\033[1m── tests %s: %s in %ds ──\033[0m\n" "$1" "$(cat "$out/$1.rc")" $((SECONDS - started))
    grep -v "^\s*Finished\|^\s*Running\|^$" "$out/$1.log" || true
  } 9>"$out/.print-lock"
' _ {}

for target in $targets; do
  [ "$(cat "$out/$target.rc" 2>/dev/null)" = ok ] || failed="${failed:+$failed, }$target"
done
[ -z "$failed" ] || die "tests failed: $failed"
log "every test passed"
