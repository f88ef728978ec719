#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders that take a peer's input, on the stable toolchain.
#
#   bash tests/fuzz/run.sh [seconds per target] [target ...]
#
# Builds the targets of tests/fuzz with the compiler's coverage instrumentation (the flags a
# nightly fuzzing front end passes, minus the sanitizer, which needs nightly) and runs each under
# libFuzzer for the given time (default 60 s), starting from the committed seeds. The corpus
# grows in tests/fuzz/corpus (not committed); a crash is written to tests/fuzz/artifacts and
# the script exits non-zero. Prints, per target, the inputs tried and the coverage reached.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frames indicators stix taxii_query enrollment pki)
fi
triple="$(rustc -vV | sed -n 's/^host: //p')"
# The triple is named so that build scripts and macros are built without instrumentation.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --locked --manifest-path "$here/Cargo.toml" --target "$triple" \
    --target-dir "$here/target" --bins
status=0
for target in "${targets[@]}"; do
    mkdir -p "$here/corpus/$target" "$here/artifacts/$target"
    log="$here/artifacts/$target.log"
    if "$here/target/$triple/release/$target" "$here/corpus/$target" "$here/seeds/$target" \
        -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 -rss_limit_mb=2048 \
        -artifact_prefix="$here/artifacts/$target/" >"$log" 2>&1; then
        verdict="no crash"
    else
        verdict="CRASH (see $log and $here/artifacts/$target/)"
        status=1
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    printf '%-12s %12s inputs in %ss, coverage %s edges: %s\n' "$target" "${runs:-?}" "$seconds" "${cov:-?}" "$verdict"
done
exit $status
