#!/bin/bash
# Regenerates docs/reliability.md: runs every test (scripts/test-all.sh) with the fuzz
# targets given FUZZ_SECONDS each instead of CI's 15, then writes the figures those
# tests recorded into the document. Run as root on Debian 12, like test-all.sh:
#
#   scripts/reliability.sh [FUZZ_SECONDS]     (default 600)
set -Eeuo pipefail
source "$(dirname "$0")/lib.sh"
export BT_FUZZ_SECONDS=${1:-600}
export BT_REPORT_DIR=$REPO/target/reliability
"$REPO/scripts/test-all.sh"
cp "$BT_REPORT_DIR/reliability.md" "$REPO/docs/reliability.md"
say "wrote docs/reliability.md"
