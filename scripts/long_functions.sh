#!/usr/bin/env bash
# Lists the functions in src/ longer than a limit (default 80 lines), longest
# first, as "LINES FILE:LINE NAME". The data tables (method_table,
# param_table) are left out: they are rows, not logic. Exits 1 when any
# other function is over the limit. Needs universal-ctags.
#
#   scripts/long_functions.sh [LIMIT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
limit=${1:-80}
command -v ctags >/dev/null || { echo "error: ctags not found (apt-get install universal-ctags)" >&2; exit 2; }
cd "$root"
long=$(ctags -R --languages=C++ --kinds-C++=f --fields=+ne -o - src |
  awk -F'\t' -v limit="$limit" '{
    l = ""; e = ""
    for (i = 4; i <= NF; i++) {
      if ($i ~ /^line:/) l = substr($i, 6)
      if ($i ~ /^end:/) e = substr($i, 5)
    }
    if (l != "" && e != "" && e - l + 1 > limit && $1 != "method_table" && $1 != "param_table")
      print e - l + 1, $2 ":" l, $1
  }' | sort -rn)
if [ -n "$long" ]; then
  echo "$long"
  exit 1
fi
echo "no function in src/ over $limit lines (data tables aside)"
