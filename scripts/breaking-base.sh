#!/usr/bin/env bash
# Prints the commit `make breaking` compares proto/ with: the API and the
# Raft log (both in proto/) may only evolve compatibly from what has landed.
#   - $BREAKING_BASE when set;
#   - on a branch: its merge base with origin/main (or main);
#   - on main itself (CI's clean clone): proto/BREAKING_BASE, the main this
#     work started from. Whoever lands a submission updates that file to the
#     main it started from (git merge-base HEAD origin/main before merging).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BREAKING_BASE:-}" ]; then echo "$BREAKING_BASE"; exit 0; fi
head=$(git rev-parse HEAD)
for ref in origin/main main; do
  if other=$(git rev-parse --verify -q "$ref^{commit}") && [ "$other" != "$head" ]; then
    base=$(git merge-base HEAD "$other")
    if [ "$base" != "$head" ]; then echo "$base"; exit 0; fi
  fi
done
base=$(tr -d '[:space:]' < proto/BREAKING_BASE)
git rev-parse --verify -q "$base^{commit}" >/dev/null || { echo "proto/BREAKING_BASE: $base is not a commit of this repository" >&2; exit 1; }
echo "$base"
