#!/usr/bin/env bash
# A ready example of a batch run: one cnnviz method over a folder of images,
# split across parallel processes with --shard (GNU parallel when installed,
# else background jobs), resumable, then merged and reported.
#
#   scripts/batch.sh IMAGE_DIR OUTDIR [JOBS] [-- cnnviz options...]
#
# Example: scripts/batch.sh photos/ runs/photos 2 -- gradcam --all-layers -m squeezenet1_1
# (default command: gradcam). Re-running resumes: finished images are skipped
# (--skip-existing). Each job uses THREADS LibTorch threads (default: cores /
# JOBS). Writes OUTDIR/manifest.json and OUTDIR/index.html at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cnnviz=${CNNVIZ_BIN:-$root/build/cnnviz}
[ $# -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
images=$1 outdir=$2
shift 2
jobs=1
if [ $# -gt 0 ] && [ "$1" != "--" ]; then jobs=$1; shift; fi
[ "${1:-}" = "--" ] && shift
cmd=("$@")
[ ${#cmd[@]} -gt 0 ] || cmd=(gradcam)
threads=${THREADS:-$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))}
[ -x "$cnnviz" ] || { echo "batch.sh: $cnnviz not built (run scripts/setup.sh)" >&2; exit 1; }

run_shard() {  # K
  "$cnnviz" "${cmd[@]}" --shard "$1/$jobs" --skip-existing --threads "$threads" -q \
    -o "$outdir" "$images"
}
export -f run_shard 2>/dev/null || true

status=0
if [ "$jobs" -eq 1 ]; then
  "$cnnviz" "${cmd[@]}" --skip-existing --threads "$threads" -o "$outdir" "$images" || status=$?
elif command -v parallel >/dev/null 2>&1; then
  export cnnviz jobs threads outdir images
  CMD="${cmd[*]}" parallel --will-cite --halt never -j "$jobs" \
    '"$cnnviz" $CMD --shard {}/"$jobs" --skip-existing --threads "$threads" -q -o "$outdir" "$images"' \
    ::: $(seq 1 "$jobs") || status=$?
else
  pids=()
  for k in $(seq 1 "$jobs"); do
    run_shard "$k" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=$?; done
fi
if [ "$jobs" -gt 1 ]; then
  "$cnnviz" merge "$outdir"
fi
"$cnnviz" report "$outdir"
# 3 = some images failed (listed in the manifest); anything else is passed on.
exit "$status"
