#!/usr/bin/python3
"""Runs every example shown in README.md and docs/*.md and checks what it prints.

  doc_examples_test.py --cnnviz BUILD/cnnviz --models BUILD/test-models --shared SHARED [--only FILE.md]

In a fenced code block, a line that starts with "$ " is a command (a line that
ends with a backslash continues on the next one); the lines after it, up to the
next "$ " line or the end of the block, are its output. Each document's
commands run in order, in bash, in a fresh directory of their own that holds
cat.jpg, cat_dog.png, snake.png and spider.png (from SHARED/images) and
photos/ with the same four, with the cnnviz under test first on PATH,
CNNVIZ_MODELS pointing to the test models (squeezenet1_1 with its real
weights, every other one with random weights) and HOME and the XDG folders
inside that directory, so that no user configuration is read.

A command must exit 0, unless the next command of its block is "$ echo $?":
then it must exit with the status that line shows. Shown output is compared
line by line with what the command printed (stdout and stderr together) after
every number is masked to '#' and runs of white space are collapsed; a shown
line "..." stands for any number of lines. "cnnviz serve" is started on a
free port, must print its URL as the first line within 30 s and answer
there, keeps running for the rest of its block (later commands there reach
it under the port the document shows) and must exit 0 on SIGTERM.

docs/formats.md's exit-code table (after its "exit-codes" marker) is checked
against the footer of `cnnviz --help`.

Exit status: 0 when everything passed, 1 on any failure, 77 (skipped) when
SHARED is absent: the examples show the real SqueezeNet's classifications.
Standard library only.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = ("cat.jpg", "cat_dog.png", "snake.png", "spider.png")
NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
FENCE = re.compile(r"^( {0,3})(```+|~~~+)")
EXIT_MARKER = "<!-- exit-codes: checked against cnnviz --help by tests/doc_examples_test.py -->"
COMMAND_TIMEOUT_S = 300
SERVE_START_S = 30
SERVE_STOP_S = 15
OPTIONAL_TOOLS = ("curl", "jq")


def mask(line):
    """A line as compared: numbers as '#', white space collapsed."""
    return " ".join(NUMBER.sub("#", line).split())


class Example:
    def __init__(self, doc, line, command, shown):
        self.doc = doc          # path relative to ROOT
        self.line = line        # 1-based line of the "$ " line
        self.command = command  # as bash reads it (continuations kept)
        self.shown = shown      # the output lines shown after it
        self.expect_rc = 0
        self.block = 0          # index of its code block in the document

    def where(self):
        return f"{self.doc}:{self.line}"


def parse(doc):
    """The examples of one Markdown file, in order."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        lines = f.read().split("\n")
    examples = []
    block = 0
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m.group(1)), m.group(2)
        block += 1
        body = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) <= {fence[0]}:
                break
            raw = lines[i]
            body.append((i + 1, raw[indent:] if raw[:indent].strip() == "" else raw.lstrip()))
            i += 1
        i += 1  # the closing fence
        j = 0
        current = None
        while j < len(body):
            number, text = body[j]
            if text.startswith("$ "):
                command = text[2:]
                while command.endswith("\\") and j + 1 < len(body):
                    j += 1
                    command += "\n" + body[j][1]
                current = Example(doc, number, command, [])
                current.block = block
                examples.append(current)
            elif current is not None and current.block == block:
                current.shown.append(text)
            j += 1
    for e in examples:
        while e.shown and not e.shown[-1].strip():
            e.shown.pop()
    # "$ echo $?" right after a command gives that command's exit status.
    kept = []
    for e in examples:
        if e.command.strip() == "echo $?" and kept and kept[-1].block == e.block:
            shown = [s for s in e.shown if s.strip()]
            if len(shown) != 1 or not shown[0].strip().isdigit():
                raise SystemExit(f"{e.where()}: 'echo $?' must show one number")
            kept[-1].expect_rc = int(shown[0].strip())
            continue
        kept.append(e)
    return kept


def matches(shown, actual):
    """True when the shown lines match the actual ones ('...' matches any run of lines)."""
    shown = [s for s in (mask(x) if x.strip() != "..." else "..." for x in shown)]
    actual = [mask(x) for x in actual]
    while actual and not actual[-1]:
        actual.pop()
    memo = {}

    def go(i, j):
        if (i, j) in memo:
            return memo[(i, j)]
        if i == len(shown):
            ok = j == len(actual)
        elif shown[i] == "...":
            ok = any(go(i + 1, k) for k in range(j, len(actual) + 1))
        else:
            ok = j < len(actual) and shown[i] == actual[j] and go(i + 1, j + 1)
        memo[(i, j)] = ok
        return ok

    return go(0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url, deadline):
    """True once GET url answers (any HTTP status), trying until the deadline."""
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            if time.time() > deadline:
                return False
            time.sleep(0.1)


def tools_missing(command):
    """Optional tools the command calls that this machine lacks."""
    words = set()
    for part in re.split(r"\|\||&&|[|;&\n]", command):
        tokens = part.split()
        if tokens:
            words.add(tokens[0])
    return [t for t in OPTIONAL_TOOLS if t in words and shutil.which(t) is None]


class Server:
    """A `cnnviz serve` started by an example, running until its block ends."""

    def __init__(self, example, command, env, cwd):
        self.example = example
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, start_new_session=True)
        self.first = None
        got_first = threading.Event()
        threading.Thread(target=self._read, args=(got_first,), daemon=True).start()
        got_first.wait(SERVE_START_S)

    def _read(self, got_first):
        line = self.proc.stdout.readline()
        self.first = line.rstrip("\n") if line else None
        got_first.set()
        for _ in self.proc.stdout:  # keep the pipe drained
            pass

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stop(self):
        """SIGTERM; returns the exit status (None when it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(SERVE_STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


class Runner:
    def __init__(self, args):
        self.cnnviz = os.path.abspath(args.cnnviz)
        self.models = os.path.abspath(args.models)
        self.shared = os.path.abspath(args.shared)
        self.work = tempfile.mkdtemp(prefix="cnnviz-doc-examples-")
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []
        self.models_dir = self._link_models()

    def _link_models(self):
        """CNNVIZ_MODELS: the real squeezenet1_1 and every random-weight test model."""
        pretrained = os.path.join(self.models, "pretrained", "squeezenet1_1.pt")
        if not os.path.isfile(pretrained):
            raise SystemExit(f"doc_examples_test.py: {pretrained} missing "
                             "(the fixture.export_pretrained test exports it from SHARED)")
        linked = os.path.join(self.work, "models")
        os.makedirs(linked)
        for path in sorted(glob.glob(os.path.join(self.models, "*.pt"))):
            name = os.path.basename(path)
            if name != "squeezenet1_1.pt":
                os.symlink(path, os.path.join(linked, name))
        os.symlink(pretrained, os.path.join(linked, "squeezenet1_1.pt"))
        return linked

    def sandbox(self, doc):
        box = os.path.join(self.work, re.sub(r"[^A-Za-z0-9]+", "_", doc))
        os.makedirs(os.path.join(box, "photos"))
        for name in IMAGES:
            src = os.path.join(self.shared, "images", name)
            shutil.copy(src, os.path.join(box, name))
            shutil.copy(src, os.path.join(box, "photos", name))
        home = os.path.join(box, ".home")
        os.makedirs(home)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNNVIZ_")}
        # LibTorch's OpenMP threads spin while they wait; beside other tests on few cores
        # that makes a run several times slower. Passive waiting changes no result.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["LC_ALL"] = "C.UTF-8"  # one sort order for `ls`
        # `python3` in an example is the Python the project's scripts use (Debian's, with
        # Pillow), also where another one comes first on PATH.
        tools = os.path.join(box, ".bin")
        os.makedirs(tools)
        os.symlink(sys.executable, os.path.join(tools, "python3"))
        env.update({
            "PATH": os.pathsep.join([os.path.dirname(self.cnnviz), tools,
                                     os.environ.get("PATH", "")]),
            "CNNVIZ_MODELS": self.models_dir,
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        })
        return box, env

    def report(self, example, ok, seconds, note=""):
        status = "ok" if ok else "FAIL"
        print(f"{example.where()} {status} {seconds:.1f}s{(' ' + note) if note else ''}", flush=True)

    def fail(self, example, seconds, message):
        self.failed += 1
        self.report(example, False, seconds)
        text = (f"{example.where()}: {message}\n  command: $ {example.command}")
        self.failures.append(text)
        print("  " + text.replace("\n", "\n  "), flush=True)

    def run_doc(self, doc):
        examples = parse(doc)
        if not examples:
            return
        box, env = self.sandbox(doc)
        server = None
        ports = {}  # port the document shows -> port actually used, within a block
        block = None
        for e in examples:
            if e.block != block:
                if server:
                    self.stop_server(server)
                    server = None
                ports = {}
                block = e.block
            command = e.command
            for shown_port, real in ports.items():
                command = re.sub(rf"(127\.0\.0\.1|localhost):{shown_port}\b", rf"\g<1>:{real}",
                                 command)
            missing = tools_missing(command)
            if missing:
                self.skipped += 1
                print(f"{e.where()} skipped ({', '.join(missing)} not installed)", flush=True)
                continue
            if re.match(r"\s*cnnviz\s+serve\b", command):
                if server:
                    self.stop_server(server)
                server = self.start_server(e, command, env, box, ports)
                continue
            self.run_command(e, command, env, box)
        if server:
            self.stop_server(server)

    def run_command(self, e, command, env, cwd):
        start = time.time()
        try:
            proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.fail(e, time.time() - start, f"timed out after {COMMAND_TIMEOUT_S} s")
            return
        seconds = time.time() - start
        output = proc.stdout.decode("utf-8", "replace").split("\n")
        if proc.returncode != e.expect_rc:
            self.fail(e, seconds, f"exit status {proc.returncode}, expected {e.expect_rc}\n"
                      + "  output:\n" + indent(output))
            return
        if e.shown and not matches(e.shown, output):
            self.fail(e, seconds, "output differs (numbers masked as #)\n  expected:\n"
                      + indent(e.shown) + "\n  actual:\n" + indent(output))
            return
        self.passed += 1
        self.report(e, True, seconds)

    def start_server(self, e, command, env, cwd, ports):
        start = time.time()
        command = command.strip()
        if command.endswith("&"):
            command = command[:-1].rstrip()
        real = free_port()
        m = re.search(r"--port[ =](\d+)", command)
        if m and m.group(1) == "0":
            real = None  # an ephemeral port: the URL says which
        elif m:
            ports[m.group(1)] = real
            command = command[:m.start()] + f"--port {real}" + command[m.end():]
        else:
            ports["8080"] = real  # the default port
            command += f" --port {real}"
        server = Server(e, command, env, cwd)
        seconds = time.time() - start
        url = server.first
        expected = rf"http://127\.0\.0\.1:{real if real else r'[0-9]+'}/"
        if url is None or not re.match(expected, url):
            server.stop()
            self.fail(e, seconds, f"no URL like {expected} on the first line within "
                      f"{SERVE_START_S} s (got {url!r})\n  stderr:\n"
                      + indent(server.stderr_text().split("\n")))
            return None
        if not answers(url, start + SERVE_START_S):
            server.stop()
            self.fail(e, time.time() - start, f"{url} printed, but it does not answer")
            return None
        if e.shown and not matches(e.shown, [url]):
            server.stop()
            self.fail(e, seconds, "output differs (numbers masked as #)\n  expected:\n"
                      + indent(e.shown) + "\n  actual:\n" + indent([url]))
            return None
        self.passed += 1
        self.report(e, True, seconds, "(serving)")
        return server

    def stop_server(self, server):
        start = time.time()
        rc = server.stop()
        if rc != 0:
            self.fail(server.example, time.time() - start,
                      f"cnnviz serve exited {rc} on SIGTERM, expected 0\n  stderr:\n"
                      + indent(server.stderr_text().split("\n")))

    def check_exit_codes(self):
        """docs/formats.md's exit-code table against the footer of `cnnviz --help`."""
        doc = "docs/formats.md"
        start = time.time()
        e = Example(doc, 0, "cnnviz --help", [])
        path = os.path.join(ROOT, doc)
        if not os.path.isfile(path):
            self.fail(e, 0.0, "missing")
            return
        help_text = subprocess.run([self.cnnviz, "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True).stdout
        m = re.search(r"Exit codes:\s*(.*)", help_text, re.S)
        if not m:
            self.fail(e, 0.0, "`cnnviz --help` shows no 'Exit codes:' footer")
            return
        footer = {}
        for item in re.split(r",\s*", " ".join(m.group(1).split())):
            parts = item.split(" ", 1)
            if len(parts) == 2 and parts[0].isdigit():
                footer[int(parts[0])] = parts[1].strip()
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        try:
            at = lines.index(EXIT_MARKER)
        except ValueError:
            self.fail(e, 0.0, f"no line '{EXIT_MARKER}'")
            return
        e.line = at + 1
        table = []
        for line in lines[at + 1:]:
            if not line.startswith("|"):
                break
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
        problems = []
        if len(table) < 2 or [c.lower() for c in table[0]] != ["code", "meaning"]:
            problems.append("the marker must be followed directly by a table '| code | meaning |'")
        documented = {}
        for row in table[2:]:
            if len(row) < 2 or not row[0].isdigit():
                problems.append(f"row {row!r}: the code cell must be a number")
                continue
            documented[int(row[0])] = row[1]
        for code, words in footer.items():
            if code not in documented:
                problems.append(f"code {code} ({words}) is not in the table")
            elif not documented[code].startswith(words):
                problems.append(f"code {code}: the meaning must start with '{words}', "
                                f"it starts with '{documented[code][:len(words) + 20]}'")
        for code in documented:
            if code not in footer:
                problems.append(f"code {code} is not in the footer of `cnnviz --help`")
        if not footer:
            problems.append("the footer of `cnnviz --help` lists no codes")
        if problems:
            self.fail(e, time.time() - start, "exit-code table:\n" + indent(problems))
        else:
            self.passed += 1
            self.report(e, True, time.time() - start, f"(exit codes: {len(footer)})")


def indent(lines, limit=40):
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... ({len(lines) - limit} more lines)")
    return "\n".join("    | " + line for line in shown)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cnnviz", required=True, help="the cnnviz binary under test")
    parser.add_argument("--models", required=True, help="the suite's test models (build/test-models)")
    parser.add_argument("--shared", required=True, help="the shared folder (images/, models/)")
    parser.add_argument("--only", help="run only this Markdown file (e.g. docs/guide.md)")
    args = parser.parse_args()

    if not os.path.isdir(os.path.join(args.shared, "images")):
        print(f"skipped: {args.shared} is absent (the examples need its images and the real "
              "SqueezeNet)")
        return 77
    if not os.access(args.cnnviz, os.X_OK):
        print(f"doc_examples_test.py: {args.cnnviz}: not an executable", file=sys.stderr)
        return 1

    docs = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                                  for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
    if args.only:
        wanted = os.path.normpath(args.only)
        docs = [d for d in docs if d == wanted or os.path.basename(d) == wanted]
        if not docs:
            print(f"doc_examples_test.py: --only {args.only}: no such document", file=sys.stderr)
            return 2

    started = time.time()
    runner = Runner(args)
    try:
        for doc in docs:
            runner.run_doc(doc)
        if not args.only or "docs/formats.md" in docs:
            runner.check_exit_codes()
    finally:
        shutil.rmtree(runner.work, ignore_errors=True)
    if runner.failures:
        print("\nfailures:")
        for text in runner.failures:
            print("  " + text.split("\n")[0])
    skipped = f", {runner.skipped} skipped" if runner.skipped else ""
    print(f"{runner.passed} passed, {runner.failed} failed{skipped} "
          f"({time.time() - started:.0f} s)")
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
