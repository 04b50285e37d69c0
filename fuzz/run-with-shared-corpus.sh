#!/usr/bin/env bash
# Runs the three fuzz targets, each seeded with the committed seeds plus every message of the shared
# corpus (../shared/corpus, 755 real SIP messages; not committed here), for SECONDS each (default 1800).
# New inputs libFuzzer finds go to a scratch directory, not into the committed seeds.
# Usage: fuzz/run-with-shared-corpus.sh [SECONDS]      (needs the nightly toolchain and cargo-fuzz)
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-1800}"
shared="../../shared/corpus"
[ -d "$shared" ] || { echo "missing $shared: the shared corpus must sit beside the checkout" >&2; exit 1; }
scratch="$(mktemp -d)"
mkdir -p "$scratch/shared"
i=0
while IFS= read -r f; do i=$((i + 1)); cp "$f" "$scratch/shared/$i-$(basename "$f")"; done \
  < <(find "$shared" -type f \( -name '*.sip' -o -name '*.bin' \))
echo "seeded with $(ls "$scratch/shared" | wc -l) shared corpus messages; scratch $scratch"
for t in parse framer roundtrip; do
  mkdir -p "$scratch/$t"
  cp corpus/"$t"/* "$scratch/$t/"
  echo "== $t for ${secs}s"
  cargo +nightly fuzz run "$t" -O "$scratch/$t" "$scratch/shared" -- \
    -max_total_time="$secs" -print_final_stats=1 2>&1 | tail -25
done
