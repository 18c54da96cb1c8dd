#!/usr/bin/env bash
# Prints the path of a Python interpreter that can import torch and
# torchvision, or fails with a one-line message. `python3` on PATH may be a
# pyenv or venv Python without them; Debian's python3-torch lives under
# /usr/bin/python3.
set -u
for candidate in "${CNNVIZ_PYTHON:-}" /usr/bin/python3 "$(command -v python3 2>/dev/null)" /usr/local/bin/python3; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  if "$candidate" -c 'import torch, torchvision' >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done
echo "find_python.sh: no Python interpreter with torch and torchvision found (install Debian's python3-torch python3-torchvision, or set CNNVIZ_PYTHON)" >&2
exit 1
