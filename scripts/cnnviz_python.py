"""Find a Python interpreter that has torch and torchvision, and re-run the script there.

On Debian the `python3` first on PATH is often a pyenv or venv Python without torch, while
Debian's python3-torch and python3-torchvision live under /usr/bin/python3. Scripts call
ensure_torch() before importing torch:

    sys.path.insert(0, <repo>/scripts)
    from cnnviz_python import ensure_torch
    ensure_torch("my_script.py")
    import torch
"""

import os
import shutil
import subprocess
import sys

_CANDIDATES = ["/usr/bin/python3", "/usr/local/bin/python3"]
_PROBE = "import torch, torchvision"


def _has_torch(python):
    """True when `python` runs and imports torch and torchvision."""
    try:
        done = subprocess.run([python, "-c", _PROBE], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def ensure_torch(script_name):
    """Return when this interpreter imports torch and torchvision; otherwise replace the process
    with one that does (same argv), or print one line to stderr and exit with status 2."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass

    here = os.path.realpath(sys.executable) if sys.executable else None
    seen = set()
    # CNNVIZ_PYTHON names an interpreter explicitly, as for scripts/find_python.sh.
    for python in [os.environ.get("CNNVIZ_PYTHON")] + _CANDIDATES + [shutil.which("python3")]:
        if not python or not os.access(python, os.X_OK):
            continue
        real = os.path.realpath(python)
        # pyenv shims and symlinks can name this very interpreter: skip it and duplicates.
        if real == here or real in seen:
            continue
        seen.add(real)
        if _has_torch(python):
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(python, [python] + sys.argv)

    print(f"{script_name}: no Python interpreter with torch and torchvision found "
          "(install Debian's python3-torch python3-torchvision)", file=sys.stderr)
    sys.exit(2)
