#!/usr/bin/env bash
# ctest fixture: exports squeezenet1_1 with the real weights in shared/models
# into OUTDIR (TorchScript and ONNX), or says why it cannot (the pretrained tests then skip).
set -eu
python=$1 outdir=$2 shared=$3
weights=$shared/models/squeezenet1_1-b8a52dc0.pth
if [ ! -f "$weights" ]; then
  echo "skip: $weights not found (shared/ absent): pretrained tests will be skipped"
  exit 0
fi
export=$(dirname "$0")/../scripts/export_models.py
"$python" "$export" -o "$outdir" --weights "$weights" squeezenet1_1
# The same weights as ONNX, for the round trip (onnx_model_test.cpp).
exec "$python" "$export" -o "$outdir" --onnx --weights "$weights" squeezenet1_1
