#!/usr/bin/env python3
"""`cnnviz serve` in a real browser.

Starts the server (with a token) on four generated images and drives Debian's
chromium, headless, over the DevTools protocol (websocket-client; nothing is
downloaded): loads the page, picks an image, checks the top 5, targets the
second class, moves the Grad-CAM layer slider (and checks that this makes no
request), changes opacity and colormap (canvas pixels change, no request),
compares with guided backprop in pane B, reloads the permalink into a fresh
page and checks the view comes back, switches to the tiny ViT beside MODEL.pt
(tiny_vit.pt, when there) and checks the attention method's block slider and
head picker (heads swap with no request), switches to the tiny detector and segmenter beside
it (a click on a box, and on a pixel, of the image explains it), uploads a good and a garbage file
through the file input and checks the server's error is shown. Any uncaught
exception in the page fails the test. Takes a screenshot of the comparison.

usage: serve_browser_test.py CNNVIZ MODEL.pt SCREENSHOT.png
Fails (never skips) when chromium is missing; $CNNVIZ_CHROMIUM names another
browser binary.
"""
import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

DEADLINE = time.monotonic() + 180  # the whole test, however slow the machine
TOKEN = "browser-test-token"


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


def remaining(cap):
    left = DEADLINE - time.monotonic()
    if left <= 0:
        fail("the test ran out of time (180 s)")
    return min(cap, left)


def ok(msg):
    print("ok: " + msg, flush=True)


def lines_of(stream, sink):
    """Copies a pipe's lines into a queue (a thread: the pipe never fills)."""
    for raw in iter(stream.readline, b""):
        sink.put(raw.decode("utf-8", "replace").rstrip("\n"))
    sink.put(None)


def first_line(q, proc, what, timeout, match=lambda s: True):
    end = time.monotonic() + remaining(timeout)
    while True:
        try:
            line = q.get(timeout=max(0.05, end - time.monotonic()))
        except queue.Empty:
            fail(f"{what}: nothing after {timeout} s")
        if line is None:
            fail(f"{what}: the process exited (status {proc.poll()})")
        if match(line):
            return line
        if time.monotonic() > end:
            fail(f"{what}: nothing after {timeout} s")


def make_images(d):
    """Four small images unlike each other (one not square: the crop matters; noise, in which
    the tiny detector finds boxes)."""
    import numpy as np
    from PIL import Image
    h, w = 180, 240
    y, x = np.mgrid[0:h, 0:w]
    disc = (x - 120) ** 2 + (y - 90) ** 2 < 60 ** 2
    cells = ((x // 30) + (y // 30)) % 2
    images = {
        "gradient.png": np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1),
        "disc.png": np.stack([np.where(disc, 230, 20), np.full_like(x, 90), np.where(disc, 20, 200)], -1),
        "checker.jpg": np.stack([cells * 255, np.zeros_like(x), cells * 128], -1)[:160, :160],
        "noise.png": np.random.default_rng(7).integers(0, 256, (h, w, 3)),
    }
    for name, a in images.items():
        Image.fromarray(a.astype(np.uint8)).save(os.path.join(d, name), quality=92)
    return sorted(images)


class Browser:
    """One headless chromium and a DevTools session on its page."""

    def __init__(self, binary, profile):
        import websocket
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             "--disable-extensions", "--window-size=1400,900", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log = queue.Queue()
        threading.Thread(target=lines_of, args=(self.proc.stderr, self.log), daemon=True).start()
        line = first_line(self.log, self.proc, "chromium's DevTools address", 30,
                          lambda s: "DevTools listening on ws://" in s)
        port = int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                   timeout=remaining(10)))
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            fail(f"chromium has no page target: {targets}")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=remaining(10),
                                              suppress_origin=True)
        self.next_id = 0
        self.events = []

    def _recv(self, timeout):
        import websocket
        self.ws.settimeout(max(0.01, timeout))
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        end = time.monotonic() + remaining(timeout)
        while time.monotonic() < end:
            msg = self._recv(end - time.monotonic())
            if msg is None:
                continue
            if msg.get("id") == mid:
                if "error" in msg:
                    fail(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        fail(f"DevTools {method}: no answer after {timeout} s")

    def js(self, expr, timeout=30):
        """The value of a JS expression (promises awaited)."""
        r = self.call("Runtime.evaluate", timeout=timeout, expression=expr, awaitPromise=True,
                      returnByValue=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            fail(f"JS `{expr[:80]}` threw: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    def wait(self, expr, what, timeout=45):
        end = time.monotonic() + remaining(timeout)
        while True:
            v = self.js(expr)
            if v:
                return v
            if time.monotonic() > end:
                fail(f"{what}: not after {timeout} s (page status: {self.js(STATUS)!r})")
            time.sleep(0.1)

    def fresh(self, url, what, timeout=60):
        """Loads url in a fresh document (through about:blank: a new hash alone would
        not reload) and waits until the page is ready."""
        self.call("Page.navigate", url="about:blank")
        self.wait("location.href === 'about:blank'", "about:blank", 10)
        self.call("Page.navigate", url=url)
        self.wait(f"location.href !== 'about:blank' && {READY}", what, timeout)

    def api_requests(self):
        """URLs of the /api/ requests the page made so far (Network events)."""
        self.call("Runtime.evaluate", expression="0")  # collects the events already sent
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent" and "/api/" in e["params"]["request"]["url"]]

    def exceptions(self):
        return [e["params"]["exceptionDetails"] for e in self.events if e["method"] == "Runtime.exceptionThrown"]

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        stop(self.proc)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


STATUS = ("JSON.stringify({state: document.body && document.body.dataset.state, "
          "status: (document.getElementById('status') || {}).textContent, "
          "error: (document.getElementById('error-text') || {}).textContent})")
READY = "document.body && document.body.dataset.state === 'ready'"


def settle(b, action_js, what, timeout=45):
    """Runs JS that starts requests and waits until the page is ready again."""
    before = b.js("Number(document.body.dataset.ready || 0)")
    b.js(action_js)
    b.wait(f"{READY} && Number(document.body.dataset.ready) > {before}", what, timeout)
    err = b.js("document.getElementById('error').hidden ? '' : document.getElementById('error-text').textContent")
    if err:
        fail(f"{what}: the page shows an error: {err}")


def set_value(sel, value, event="change"):
    return (f"(() => {{ const e = document.querySelector({json.dumps(sel)}); e.value = {json.dumps(value)};"
            f" e.dispatchEvent(new Event({json.dumps(event)}, {{bubbles: true}})); return e.value; }})()")


# A checksum of the canvas's pixels (getImageData), to see that they changed.
def pixels(canvas):
    return (f"(() => {{ const c = document.querySelector({json.dumps(canvas)});"
            " if (!c.width || !c.height) return null;"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let h = 0, n = 0; const seen = new Set();"
            " for (let i = 0; i < d.length; i += 4) { h = (h * 31 + d[i] * 7 + d[i + 1] * 3 + d[i + 2]) >>> 0;"
            "   if (n < 64 && !seen.has(d[i] + ',' + d[i + 1] + ',' + d[i + 2])) { seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]); n++; } }"
            " return {hash: h, colours: n, w: c.width, h: c.height}; })()")


def get_json(base, path):
    req = urllib.request.Request(base + path, headers={"X-Cnnviz-Token": TOKEN})
    with urllib.request.urlopen(req, timeout=remaining(30)) as r:
        return json.load(r)


def post_error(base, path, data):
    """The JSON error the server answers a POST with (it must refuse it)."""
    req = urllib.request.Request(base + path, data=data, method="POST",
                                 headers={"X-Cnnviz-Token": TOKEN, "Content-Type": "application/octet-stream"})
    try:
        urllib.request.urlopen(req, timeout=remaining(30))
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
    fail(f"POST {path} with garbage: the server accepted it")


def attention_heads(b, screenshot):
    """The tiny ViT in pane A with the attention method: a block per slider step, a head picker
    with the mean and each head, heads and blocks swapped with no request."""
    b.js("(() => { const c = document.querySelector('#compare'); c.checked = false;"
         " c.dispatchEvent(new Event('change', {bubbles: true})); })()")
    settle(b, set_value("#model", "tiny_vit"), "choosing the tiny ViT")
    settle(b, set_value("#a-method", "attention"), "choosing attention")
    state = b.js("(() => { const s = document.querySelector('#a-layer');"
                 " return {max: Number(s.max), name: document.querySelector('#a-layer-name').textContent,"
                 " heads: [...document.querySelectorAll('#a-head option')].map(o => o.value),"
                 " field: document.querySelector('#a-head-field').classList.contains('na'),"
                 " head: document.querySelector('#a-canvas').dataset.head}; })()")
    if state["max"] != 1 or not state["name"].endswith(".self_attention") or state["field"] \
            or state["heads"] != ["", "0", "1"] or state["head"] != "":
        fail(f"attention on the tiny ViT: slider, head picker and canvas read {state}, not 2 blocks "
             "with the mean and 2 heads")
    p0 = b.js(pixels("#a-canvas"))
    before = len(b.api_requests())
    b.js(set_value("#a-head", "1"))
    time.sleep(0.5)
    head = b.js("document.querySelector('#a-canvas').dataset.head")
    p1 = b.js(pixels("#a-canvas"))
    b.js(set_value("#a-layer", "0", "input"))
    time.sleep(0.5)
    moved = b.js("({layer: document.querySelector('#a-canvas').dataset.layer,"
                 " head: document.querySelector('#a-canvas').dataset.head,"
                 " caption: document.querySelector('#a-caption').textContent})")
    if head != "1" or moved["head"] != "1" or not moved["layer"].endswith("encoder_layer_0.self_attention") \
            or "head 1" not in moved["caption"]:
        fail(f"after picking head 1 and block 0: canvas head {head!r}, then {moved}")
    if not p0 or p0["hash"] == p1["hash"]:
        fail(f"picking head 1 did not change the canvas: {p0} {p1}")
    if len(b.api_requests()) != before:
        fail(f"the head picker or block slider made requests: {b.api_requests()[before:]}")
    shot = b.call("Page.captureScreenshot", format="png")
    with open(screenshot.replace(".png", "-attention.png"), "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    # The permalink keeps the head: the pane's eighth field.
    time.sleep(0.3)
    pane = [x[2:] for x in b.js("location.hash")[1:].split("&") if x.startswith("a=")]
    if not pane or pane[0].split(",")[7:8] != ["1"]:
        fail(f"after picking head 1 the permalink's pane A is {pane}, not one ending in head 1")
    fields = pane[0].split(",")
    fields[7] = "0"
    settle(b, f"location.hash = location.hash.replace(/a=[^&]*/, 'a=' + {json.dumps(','.join(fields))})",
           "following a permalink to head 0")
    linked = b.js("({head: document.querySelector('#a-canvas').dataset.head,"
                  " picker: document.querySelector('#a-head').value})")
    if linked != {"head": "0", "picker": "0"}:
        fail(f"a permalink to head 0 shows {linked}")
    ok("attention on the tiny ViT: 2 blocks, the mean and 2 heads; head 1 of block 0 drawn, no request; "
       "the permalink keeps the head")


def click_canvas(b, canvas, sx, sy, what):
    """A real mouse click (DevTools input events) on `canvas` at source pixel (sx, sy) of the
    image it shows (data-width / data-height: the image's size), then waits for the page."""
    b.js(f"document.querySelector({json.dumps(canvas)}).scrollIntoView({{block: 'center'}})")
    time.sleep(0.2)
    at = b.js(f"(() => {{ const c = document.querySelector({json.dumps(canvas)}); const r = c.getBoundingClientRect();"
              f" return {{x: r.left + {sx} * r.width / Number(c.dataset.width),"
              f" y: r.top + {sy} * r.height / Number(c.dataset.height)}}; }})()")
    before = b.js("Number(document.body.dataset.ready || 0)")
    for kind in ("mousePressed", "mouseReleased"):
        b.call("Input.dispatchMouseEvent", type=kind, x=at["x"], y=at["y"], button="left", clickCount=1)
    b.wait(f"{READY} && Number(document.body.dataset.ready) > {before}", what, 45)
    err = b.js("document.getElementById('error').hidden ? '' : document.getElementById('error-text').textContent")
    if err:
        fail(f"{what}: the page shows an error: {err}")


def boxes_and_segments(b, base, screenshot, back_to):
    """The tiny YOLOv5-style detector: its detections listed and drawn; a click on a box in the
    image explains that box, every stage from one request. The tiny FCN: its classes listed; a
    click on a pixel explains that pixel's class, outlined on the image."""
    settle(b, set_value("#a-method", "gradcam"), "choosing gradcam")
    settle(b, set_value("#model", "tiny_yolov5"), "choosing the tiny detector")
    settle(b, set_value("#images", "noise.png"), "selecting noise.png")
    found = get_json(base, "/api/classify?image=noise.png&model=tiny_yolov5")["detections"]
    if len(found) < 2:
        fail(f"the tiny detector finds {len(found)} boxes in noise.png: the test needs 2 or more")
    side = b.js("({title: document.querySelector('#side-title').textContent,"
                " boxes: [...document.querySelectorAll('#predictions li[data-box]')].map(li => li.dataset.box),"
                " drawn: document.querySelector('#a-canvas').dataset.boxes,"
                " box: document.querySelector('#a-canvas').dataset.box,"
                " input: document.querySelector('#a-class-name').textContent})")
    # The page draws the best 50 besides its targets (box 0 is one of those).
    want = {"title": "Detections", "boxes": [str(d["index"]) for d in found], "drawn": str(min(len(found), 51)),
            "box": "0", "input": "Box"}
    if side != want:
        fail(f"the detector's view reads {side}, not {want}")
    # The smallest box: a click at its centre lies in no smaller one.
    k = min(found, key=lambda d: ((d["x2"] - d["x1"]) * (d["y2"] - d["y1"]), d["index"]))["index"]
    d = found[k]
    before = len(b.api_requests())
    click_canvas(b, "#a-canvas", (d["x1"] + d["x2"]) / 2, (d["y1"] + d["y2"]) / 2, f"clicking box {k}")
    asked = [u for u in b.api_requests()[before:] if "/api/maps?" in u]
    got = b.js("({box: document.querySelector('#a-canvas').dataset.box,"
               " caption: document.querySelector('#a-caption').textContent,"
               " target: [...document.querySelectorAll('#predictions li.target')].map(li => li.dataset.box),"
               " layers: Number(document.querySelector('#a-layer').max) + 1})")
    if got["box"] != str(k) or f"box {k}" not in got["caption"] or got["target"] != [str(k)]:
        fail(f"after clicking box {k} on the image pane A reads {got}")
    if len(asked) != 1 or f"box={k}" not in asked[0]:
        fail(f"clicking box {k} asked for {asked}, not one /api/maps with box={k}")
    layers = get_json(base, f"/api/maps?image=noise.png&model=tiny_yolov5&method=gradcam&box={k}")["layers"]
    if got["layers"] != len(layers) or len(layers) < 2:
        fail(f"box {k}: the slider has {got['layers']} layers, the maps {len(layers)}")
    b.call("Page.captureScreenshot", format="png")
    shot = b.call("Page.captureScreenshot", format="png")
    with open(screenshot.replace(".png", "-detect.png"), "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    ok(f"detector: {len(found)} boxes listed and drawn; a click on box {k} explains it "
       f"({len(layers)} stages from one request)")

    settle(b, set_value("#model", "tiny_fcn"), "choosing the tiny segmenter")
    c = get_json(base, "/api/classify?image=noise.png&model=tiny_fcn")
    title = b.js("document.querySelector('#side-title').textContent")
    listed = b.js("[...document.querySelectorAll('#predictions li[data-class]')].map(li => Number(li.dataset.class))")
    if title != "Classes" or listed != [s["class"] for s in c["segments"]]:
        fail(f"the segmenter's side list is {title} {listed}, not its classes {c['segments']}")
    shown = b.js("Number(document.querySelector('#a-canvas').dataset.class)")
    req = urllib.request.Request(base + "/api/segments?image=noise.png&model=tiny_fcn",
                                 headers={"X-Cnnviz-Token": TOKEN})
    with urllib.request.urlopen(req, timeout=remaining(30)) as r:
        raw = r.read()
    gw, gh = c["grid"]["width"], c["grid"]["height"]
    grid = [raw[2 * i] | (raw[2 * i + 1] << 8) for i in range(gw * gh)]
    # A pixel of another class than the one shown, inside its class's region.
    pick = None
    for y in range(1, gh - 1):
        for x in range(1, gw - 1):
            v = grid[y * gw + x]
            if v != shown and all(grid[(y + dy) * gw + x + dx] == v for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0))):
                pick = (x, y, v)
                break
        if pick:
            break
    if not pick:
        fail(f"the segmenter labels noise.png with one class only ({shown}): nothing to click")
    x, y, cls = pick
    crop = c["crop"]
    sx = crop["x"] + (x + 0.5) * crop["width"] / gw
    sy = crop["y"] + (y + 0.5) * crop["height"] / gh
    click_canvas(b, "#a-canvas", sx, sy, f"clicking a pixel of class {cls}")
    got = b.js("({cls: document.querySelector('#a-canvas').dataset.class,"
               " outline: document.querySelector('#a-canvas').dataset.outline,"
               " caption: document.querySelector('#a-caption').textContent})")
    if got["cls"] != str(cls) or got["outline"] != str(cls) or f"#{cls}" not in got["caption"]:
        fail(f"after clicking a pixel of class {cls} pane A reads {got}")
    shot = b.call("Page.captureScreenshot", format="png")
    with open(screenshot.replace(".png", "-segment.png"), "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    ok(f"segmenter: classes listed; a click on a pixel of class {cls} explains it, outlined "
       f"(the default was class {shown})")
    settle(b, set_value("#model", back_to), "back to " + back_to)


def main():
    if len(sys.argv) != 4:
        print("usage: serve_browser_test.py CNNVIZ MODEL.pt SCREENSHOT.png", file=sys.stderr)
        return 2
    cnnviz, model, screenshot = sys.argv[1:]
    browser_bin = os.environ.get("CNNVIZ_CHROMIUM") or shutil.which("chromium")
    if browser_bin and not (os.path.isfile(browser_bin) and os.access(browser_bin, os.X_OK)):
        fail(f"{browser_bin} (CNNVIZ_CHROMIUM) is not an executable file")
    if not browser_bin:
        fail("chromium is not installed, and this test needs it "
             "(apt-get install --no-install-recommends chromium; scripts/test.sh installs it)")
    if not os.path.isfile(model):
        fail(f"{model} missing: run the tests through ctest (fixture.export_models)")
    try:
        import websocket  # noqa: F401  (Debian: python3-websocket)
        import numpy  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as e:
        fail(f"{e}: this test needs websocket-client, numpy and PIL (Debian: python3-websocket "
             "python3-numpy python3-pil)")

    work = tempfile.mkdtemp(prefix="cnnviz-serve-test.")
    server = browser = None
    try:
        images_dir = os.path.join(work, "images")
        os.mkdir(images_dir)
        names = make_images(images_dir)

        # The server, with a token: the page must send it with every request.
        # The models beside MODEL.pt are listed too (the tiny ViT's attention below).
        args = [cnnviz, "serve", "-m", model, "--models-dir", os.path.dirname(os.path.abspath(model)),
                "--port", "0", "--token", TOKEN]
        helptext = subprocess.run([cnnviz, "serve", "--help"], capture_output=True, text=True,
                                  timeout=remaining(30)).stdout
        if "--threads" in helptext:
            args += ["--threads", "1"]  # kind to a loaded machine
        server_log = open(os.path.join(work, "server.log"), "wb")
        server = subprocess.Popen(args + [images_dir], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=server_log)
        out = queue.Queue()
        threading.Thread(target=lines_of, args=(server.stdout, out), daemon=True).start()
        url = first_line(out, server, "the server's URL (first stdout line)", 60)
        if not url.startswith("http://127.0.0.1:") or f"token={TOKEN}" not in url:
            fail(f"the server's first line is {url!r}, not its URL with ?token={TOKEN}")
        base = url.split("?")[0].rstrip("/")
        ok(f"server up at {url}")

        profile = os.path.join(work, "profile")
        browser = b = Browser(browser_bin, profile)
        b.call("Page.enable")
        b.call("Runtime.enable")
        b.call("Network.enable")
        b.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)

        b.call("Page.navigate", url=url)
        b.wait(READY, "the page's first view", 60)
        err = b.js("document.getElementById('error').hidden ? '' : document.getElementById('error-text').textContent")
        if err:
            fail(f"the page shows an error after loading: {err}")
        opts = b.js("[...document.querySelectorAll('#images option')].map(o => o.value)")
        if sorted(opts) != names:
            fail(f"#images lists {opts}, not the folder's {names}")
        ok(f"page loaded: {len(opts)} images listed, state ready")

        # An image; its top 5.
        image = "disc.png" if b.js("document.querySelector('#images').value") != "disc.png" else "checker.jpg"
        settle(b, set_value("#images", image), "selecting " + image)
        preds = b.js("[...document.querySelectorAll('#predictions li')].map(li => ({cls: li.dataset.class, "
                     "p: Number(li.dataset.probability), text: li.textContent}))")
        if len(preds) != 5:
            fail(f"#predictions has {len(preds)} items, not 5: {preds}")
        ps = [p["p"] for p in preds]
        if not all(0 < p <= 1 for p in ps) or ps != sorted(ps, reverse=True) or sum(ps) > 1.0001:
            fail(f"the top 5's probabilities are not 5 decreasing probabilities: {ps}")
        if not all("%" in p["text"] for p in preds):
            fail(f"a top-5 item shows no percentage: {preds}")
        api_top = get_json(base, f"/api/classify?image={image}&top=5")["predictions"]
        if [str(p["index"]) for p in api_top] != [p["cls"] for p in preds]:
            fail(f"the page's top 5 {[p['cls'] for p in preds]} is not /api/classify's {api_top}")
        ok(f"{image}: top 5 shown with probabilities {[round(p, 4) for p in ps]}")

        # Gradcam, explaining the second class.
        settle(b, set_value("#a-method", "gradcam"), "choosing gradcam")
        second = preds[1]["cls"]
        settle(b, f"document.querySelectorAll('#predictions li')[1].click()", "clicking the 2nd class")
        got = b.js("({cls: document.querySelector('#a-canvas').dataset.class, "
                   "method: document.querySelector('#a-canvas').dataset.method, "
                   "input: document.querySelector('#a-class').value, "
                   "target: document.querySelectorAll('#predictions li')[1].classList.contains('target')})")
        if got["cls"] != second or got["method"] != "gradcam" or not got["input"] or not got["target"]:
            fail(f"after clicking the 2nd class ({second}) pane A shows {got}")
        ok(f"2nd class {second} ({got['input']}) is pane A's target; gradcam drawn")

        layers = get_json(base, "/api/layers")["layers"]
        slider = b.js("(() => { const s = document.querySelector('#a-layer'); return {max: Number(s.max), "
                      "value: Number(s.value), name: document.querySelector('#a-layer-name').textContent}; })()")
        if slider["max"] != len(layers) - 1:
            fail(f"#a-layer max is {slider['max']}, not {len(layers) - 1} ({len(layers)} layers)")
        if slider["name"] != layers[slider["value"]]:
            fail(f"#a-layer-name says {slider['name']!r} at position {slider['value']}, not {layers[slider['value']]!r}")
        ok(f"layer slider: {len(layers)} layers, at {slider['name']}")

        # The slider swaps maps already in memory: no request.
        to = 0 if slider["value"] != 0 else len(layers) - 1
        before = len(b.api_requests())
        b.js(set_value("#a-layer", str(to), "input"))
        time.sleep(0.5)
        after = b.api_requests()
        name = b.js("document.querySelector('#a-layer-name').textContent")
        drawn = b.js("document.querySelector('#a-canvas').dataset.layer")
        if name != layers[to] or drawn != layers[to]:
            fail(f"after moving the slider to {to}: name {name!r}, canvas {drawn!r}, not {layers[to]!r}")
        if len(after) != before:
            fail(f"moving the layer slider made requests: {after[before:]}")
        ok(f"slider moved to {layers[to]} with no request")

        # The download links carry the token in their URLs (no header there).
        links = b.js("({npy: document.querySelector('#a-npy').href, png: document.querySelector('#a-map-png').href})")
        for kind, magic in (("npy", b"\x93NUMPY"), ("png", b"\x89PNG")):
            if f"token={TOKEN}" not in links[kind] or f"layer={layers[to]}" not in links[kind]:
                fail(f"the {kind} download link {links[kind]} lacks the token or the layer")
            with urllib.request.urlopen(links[kind], timeout=remaining(30)) as r:
                head = r.read(8)
            if not head.startswith(magic):
                fail(f"the {kind} download link gives {head!r}, not a .{kind}")
        ok("download links (.npy, map PNG) work with the token in their URL")

        # Opacity and colormap: new pixels, no request.
        p0 = b.js(pixels("#a-canvas"))
        before = len(b.api_requests())
        opacity = "0.9" if b.js("document.querySelector('#opacity').value") != "0.9" else "0.3"
        b.js(set_value("#opacity", opacity, "input"))
        p1 = b.js(pixels("#a-canvas"))
        cmaps = b.js("[...document.querySelectorAll('#colormap option')].map(o => o.value)")
        current = b.js("document.querySelector('#colormap').value")
        cmap = next(c for c in ["viridis", "gray", "turbo"] + cmaps if c in cmaps and c != current)
        b.js(set_value("#colormap", cmap))
        p2 = b.js(pixels("#a-canvas"))
        time.sleep(0.3)
        if not p0 or p0["hash"] == p1["hash"] or p1["hash"] == p2["hash"]:
            fail(f"canvas pixels did not change with opacity {opacity} / colormap {cmap}: {p0} {p1} {p2}")
        if len(b.api_requests()) != before:
            fail(f"opacity/colormap made requests: {b.api_requests()[before:]}")
        ok(f"opacity {opacity} and colormap {cmap} redraw the canvas ({p0['w']}x{p0['h']}) with no request")

        # Compare: guided backprop in pane B.
        settle(b, "(() => { const c = document.querySelector('#compare'); c.checked = true;"
                  " c.dispatchEvent(new Event('change', {bubbles: true})); })()", "turning compare on")
        if b.js("document.querySelector('#pane-b').hidden || !document.querySelector('#pane-b').offsetWidth"):
            fail("pane B is not shown after turning compare on")
        settle(b, set_value("#b-method", "guided-backprop"), "guided-backprop in pane B")
        bstate = b.js("(() => { const visible = (s) => { const e = document.querySelector(s); "
                      " return !!e.offsetParent && getComputedStyle(e).visibility !== 'hidden'; };"
                      " const c = document.querySelector('#b-canvas'); return {method: c.dataset.method,"
                      " kind: c.dataset.kind, view: c.dataset.view, w: c.width, h: c.height,"
                      " views: [...document.querySelectorAll('#b-view option')].map(o => o.value),"
                      " layerRow: visible('#b-layer-row'), viewRow: visible('#b-view-row')}; })()")
        bpix = b.js(pixels("#b-canvas"))
        if bstate["method"] != "guided-backprop" or bstate["kind"] != "input-gradient" or bstate["layerRow"] \
                or not bstate["viewRow"]:
            fail(f"pane B after choosing guided-backprop: {bstate}")
        if bstate["views"] != ["all", "pos", "neg", "signed"] or not bpix or bpix["colours"] < 8:
            fail(f"pane B's map is not shown (views {bstate['views']}, pixels {bpix})")
        astate = b.js("Object.assign({}, document.querySelector('#a-canvas').dataset)")
        if (astate.get("method"), astate.get("layer"), astate.get("class")) != ("gradcam", layers[to], second):
            fail(f"pane A changed when pane B did: {astate}")
        # A label typed in pane B's class input (any case) makes it B's target.
        third = api_top[2]
        settle(b, set_value("#b-class", third["label"].upper()), "typing a label in pane B")
        bcls = b.js("document.querySelector('#b-canvas').dataset.class")
        if bcls != str(third["index"]):
            fail(f"typing {third['label'].upper()!r} in #b-class: pane B explains {bcls}, not {third['index']}")
        ok(f"typed label {third['label'].upper()!r} made class {third['index']} pane B's target")
        ok(f"compare: pane B shows guided-backprop ({bstate['view']} view, {bpix['colours']}+ colours), pane A kept")

        # Permalink: a fresh page with the hash shows the same view.
        h = b.js("location.hash")
        link = b.js("document.querySelector('#permalink').href")
        if not link.endswith(h) or "b=" not in h or "a=gradcam" not in h:
            fail(f"hash {h!r} / permalink {link!r} do not describe the view")
        b.fresh(link, "the permalink's page")
        restored = b.js("({image: document.querySelector('#images').value, a: document.querySelector('#a-method').value,"
                        " layer: document.querySelector('#a-layer-name').textContent,"
                        " cls: document.querySelector('#a-canvas').dataset.class,"
                        " canvasLayer: document.querySelector('#a-canvas').dataset.layer,"
                        " compare: document.querySelector('#compare').checked, b: document.querySelector('#b-canvas').dataset.method,"
                        " bcls: document.querySelector('#b-canvas').dataset.class,"
                        " opacity: document.querySelector('#opacity').value, cmap: document.querySelector('#colormap').value,"
                        " error: document.getElementById('error').hidden ? '' : document.getElementById('error-text').textContent})")
        want = {"image": image, "a": "gradcam", "layer": layers[to], "cls": second, "canvasLayer": layers[to],
                "compare": True, "b": "guided-backprop", "bcls": str(third["index"]), "opacity": opacity, "cmap": cmap, "error": ""}
        if restored != want:
            fail(f"the permalink restored {restored}, not {want}")
        ok(f"permalink {h} restores the view in a fresh page")

        b.call("Page.captureScreenshot", format="png")  # warm-up: fonts and layout settled
        shot = b.call("Page.captureScreenshot", format="png")
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        ok(f"screenshot {screenshot}")

        vit = os.path.join(os.path.dirname(os.path.abspath(model)), "tiny_vit.pt")
        if os.path.isfile(vit):
            attention_heads(b, screenshot)
        else:
            fail(f"{vit} missing: run the tests through ctest (fixture.export_tiny_models)")
        boxes_and_segments(b, base, screenshot, os.path.splitext(os.path.basename(model))[0])

        # Uploads through the file input: a good image, then garbage.
        doc = b.call("DOM.getDocument")
        node = b.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#upload")["nodeId"]
        good = os.path.join(work, "upload me.png")
        from PIL import Image
        Image.new("RGB", (90, 120), (200, 180, 40)).save(good)
        before = b.js("Number(document.body.dataset.ready || 0)")
        b.call("DOM.setFileInputFiles", files=[good], nodeId=node)
        b.wait(f"{READY} && Number(document.body.dataset.ready) > {before} && "
               "document.querySelector('#images').value.startsWith('upload-')", "the uploaded image", 45)
        up = b.js("({id: document.querySelector('#images').value, preds: document.querySelectorAll('#predictions li').length,"
                  " group: document.querySelector('#images option:checked').parentElement.label})")
        if up["preds"] != 5 or up["group"] != "Uploads":
            fail(f"after uploading a good image: {up}")
        ok(f"uploaded a PNG through #upload: {up['id']} selected, top 5 shown")

        garbage = os.path.join(work, "garbage.jpg")
        data = bytes((i * 73 + 11) % 256 for i in range(3000))
        with open(garbage, "wb") as f:
            f.write(data)
        status, body = post_error(base, "/api/images?name=garbage.jpg", data)
        if status != 400 or not body.get("error"):
            fail(f"the server answers garbage with {status} {body}, not 400 and a JSON error")
        b.call("DOM.setFileInputFiles", files=[garbage], nodeId=node)
        shown = b.wait("!document.getElementById('error').hidden && document.getElementById('error-text').textContent",
                       "#error after uploading garbage", 30)
        if shown != body["error"]:
            fail(f"#error shows {shown!r}, not the server's error {body['error']!r}")
        ok(f"garbage upload: #error shows the server's error: {shown}")

        # Without the token the server refuses, and the page says so.
        try:
            urllib.request.urlopen(base + "/api/info", timeout=remaining(30))
            fail("/api/info without the token: the server answered 200, not 403")
        except urllib.error.HTTPError as e:
            if e.code != 403:
                fail(f"/api/info without the token: HTTP {e.code}, not 403")
            denied = json.load(e)["error"]
        b.fresh(base + "/", "the page without the token", 30)
        shown = b.wait("!document.getElementById('error').hidden && document.getElementById('error-text').textContent",
                       "#error without the token", 10)
        if denied not in shown:
            fail(f"without the token #error shows {shown!r}, not the server's {denied!r}")
        ok(f"without the token: #error shows the server's 403: {shown}")

        exc = b.exceptions()
        if exc:
            fail(f"the page threw: {[e.get('exception', {}).get('description') or e.get('text') for e in exc]}")
        ok("no uncaught exception in the page")

        b.close()
        browser = None
        rc = stop(server)
        server = None
        if rc != 0:
            fail(f"the server exited with status {rc} on SIGTERM, not 0")
        ok("server stopped with status 0")
        return 0
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        log = os.path.join(work, "server.log")
        if os.path.exists(log):
            tail = open(log, "rb").read().decode("utf-8", "replace").splitlines()[-15:]
            if tail:
                print("server log (tail):\n  " + "\n  ".join(tail), file=sys.stderr)
        return 1
    finally:
        if browser:
            browser.close()
        if server:
            stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:  # before the try in main (arguments, chromium)
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
