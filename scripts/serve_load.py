#!/usr/bin/env python3
"""Load test and benchmark of `cnnviz serve` on loopback (standard library only).

  serve_load.py load  CNNVIZ MODEL.pt IMAGE_DIR [--clients 8] [--requests 400]
                      [--threads T] [--time-limit S]
      Starts the server on a free port, then CLIENTS threads send REQUESTS
      requests in all, a fixed mix: maps never asked for before (one in
      --new-every, default 6: a new image, method and class each time),
      classify (about a third of the others), and maps already computed (the
      rest: every layer's u8 map and PNG heatmaps).
      Prints p50/p99 latency per kind and overall (client side, and the
      server's own Server-Timing), and fails (exit 1) when any request failed,
      got no answer, or the run took longer than --time-limit.

  serve_load.py bench CNNVIZ MODEL.pt IMAGE_DIR [--threads T] [--images N]
      The speed targets: (1) the first maps of a new image and method
      (gradcam, every feature stage) as the server's time per request against
      `cnnviz gradcam --all-layers --timings`'s compute time per image over the
      same images (target <= 1.2x); (2) switching layers of a cached set: the
      server time of each layer's u8 map (target <= 30 ms, p50 and p99).
"""
import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


class Server:
    def __init__(self, cnnviz, model, images, threads, extra=()):
        cmd = [cnnviz, "serve", "-m", model, "--port", "0", "--threads", str(threads),
               "--quiet", *extra, images]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            err = self.proc.stderr.read()
            raise SystemExit(f"FAIL: server did not start: {err.strip()}")
        self.port = int(urllib.parse.urlparse(line).port)

    def stop(self):
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise SystemExit("FAIL: server did not stop within 30 s of SIGTERM")
        if code != 0:
            raise SystemExit(f"FAIL: server exited with {code} on SIGTERM")


def get(conn, path):
    """(status, body, client ms, server ms) of one GET on a kept-alive connection."""
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t0) * 1000
    timing = r.getheader("Server-Timing") or ""
    server_ms = float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")
    return r.status, body, ms, server_ms


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def images_of(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    status, body, _, _ = get(c, "/api/images")
    assert status == 200, body
    return [i["id"] for i in json.loads(body)["images"]]


def load(args):
    server = Server(args.cnnviz, args.model, args.images, args.threads, ["--queue", "64"])
    start = time.perf_counter()
    try:
        ids = images_of(server.port)
        if len(ids) < 2:
            raise SystemExit("FAIL: the load test needs at least 2 images")
        q = lambda s: urllib.parse.quote(s, safe="")
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        # One cached set to switch layers in: gradcam on the first image.
        status, body, _, _ = get(c, f"/api/maps?image={q(ids[0])}&method=gradcam")
        assert status == 200, body
        cached = json.loads(body)
        layers = [l["layer"] for l in cached["layers"]]
        base = f"image={q(ids[0])}&method=gradcam&class={cached['class']}"
        # The plan: a fixed, shuffled mix; new maps never repeat a key.
        rng = random.Random(0)
        plan = []
        methods = ["gradcam", "gradcam++", "xgradcam", "layercam", "saliency"]
        new = 0
        for i in range(args.requests):
            # Of every NEW_EVERY requests: one new map, a third classify, the rest cached.
            slot = i % args.new_every
            kind = ("new" if slot == 0 else
                    "classify" if slot % 3 == 1 else "cached")
            if kind == "classify":
                plan.append((kind, f"/api/classify?image={q(ids[i % len(ids)])}"))
            elif kind == "new":
                m = methods[new % len(methods)]
                image = ids[(new // len(methods)) % len(ids)]
                cls = new // (len(methods) * len(ids))
                plan.append((kind, f"/api/maps?image={q(image)}&method={q(m)}&class={cls}"))
                new += 1
            else:
                layer = layers[i % len(layers)]
                fmt = "u8" if i % 2 else "png&colormap=turbo"
                plan.append((kind, f"/api/map?{base}&layer={q(layer)}&format={fmt}"))
        rng.shuffle(plan)
        results = []
        lock = threading.Lock()
        todo = list(plan)

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            while True:
                with lock:
                    if not todo:
                        return
                    kind, path = todo.pop()
                try:
                    status, body, ms, sms = get(conn, path)
                except Exception as e:  # a lost request
                    status, body, ms, sms = 0, str(e).encode(), float("nan"), float("nan")
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                with lock:
                    results.append((kind, status, ms, sms, path, body[:200]))

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.time_limit)
        elapsed = time.perf_counter() - start
    finally:
        server.stop()
    failed = [r for r in results if r[1] != 200]
    print(f"serve load: {args.clients} clients, {len(plan)} requests, {os.path.basename(args.model)}, "
          f"{args.threads} threads, {elapsed:.1f} s")
    for kind in ("classify", "new", "cached", "all"):
        rows = [r for r in results if kind == "all" or r[0] == kind]
        ms = [r[2] for r in rows if r[1] == 200]
        sms = [r[3] for r in rows if r[1] == 200]
        print(f"  {kind:8s} {len(rows):4d} requests  client p50 {pct(ms, 50):8.1f} ms  "
              f"p99 {pct(ms, 99):8.1f} ms   server p50 {pct(sms, 50):8.1f} ms  p99 {pct(sms, 99):8.1f} ms")
    if len(results) != len(plan):
        raise SystemExit(f"FAIL: {len(plan) - len(results)} requests got no answer")
    if failed:
        for r in failed[:5]:
            print(f"  failed: {r[1]} {r[4]}: {r[5]!r}", file=sys.stderr)
        raise SystemExit(f"FAIL: {len(failed)} of {len(results)} requests failed")
    if elapsed > args.time_limit:
        raise SystemExit(f"FAIL: took {elapsed:.0f} s, over --time-limit {args.time_limit}")
    print("ok: none lost or failed")


def bench(args):
    files = sorted(os.path.join(args.images, f) for f in os.listdir(args.images))[: args.n]
    # The CLI: compute time per image of gradcam --all-layers in one process,
    # steady (the first image's pass, which warms the process, taken out:
    # the server's first two requests are left out the same way).
    def cli_compute(images, out):
        r = subprocess.run(
            [args.cnnviz, "gradcam", "--all-layers", "-m", args.model, "--threads",
             str(args.threads), "--batch-size", "1", "--timings", "--write", "npy", "-o",
             os.path.join(args.work, out), *images], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"FAIL: cnnviz gradcam: {r.stderr.strip()}")
        line = [l for l in r.stderr.splitlines() if "timings" in l][-1]
        return json.loads(line.split("timings ", 1)[1])["compute_ms"]

    one = cli_compute(files[:1], "cli1")
    cli_ms = (cli_compute(files, "cli") - one) / (len(files) - 1)

    server = Server(args.cnnviz, args.model, args.images, args.threads)
    try:
        ids = images_of(server.port)[: args.n]
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        q = lambda s: urllib.parse.quote(s, safe="")
        # Cold: /api/maps on an image never seen (decoding too). Page flow:
        # /api/classify first, as the page does, then /api/maps.
        cold, flow, compute = [], [], []
        for i, image in enumerate(ids):
            if i % 2 == 0:
                status, body, _, _ = get(c, f"/api/classify?image={q(image)}")
                assert status == 200, body
            status, body, ms, sms = get(c, f"/api/maps?image={q(image)}&method=gradcam")
            assert status == 200, body
            if i > 1:  # the first two also build the engine, as the CLI's start does
                (flow if i % 2 == 0 else cold).append(sms)
                compute.append(json.loads(body)["compute_ms"])
        doc = json.loads(body)
        layers = [l["layer"] for l in doc["layers"]]
        base = f"image={q(ids[-1])}&method=gradcam"
        switch, switch_client = [], []
        for r in range(args.switches):
            layer = layers[r % len(layers)]
            status, body, ms, sms = get(c, f"/api/map?{base}&layer={q(layer)}&format=u8")
            assert status == 200, body
            switch.append(sms)
            switch_client.append(ms)
    finally:
        server.stop()
    s_flow, s_cold = statistics.median(flow), statistics.median(cold)
    print(f"serve bench: {os.path.basename(args.model)}, {len(files)} images, {args.threads} threads")
    print(f"  CLI gradcam --all-layers compute        {cli_ms:8.1f} ms/image")
    print(f"  server /api/maps after /api/classify     {s_flow:8.1f} ms/request (the page's order)")
    print(f"  server /api/maps on a new image          {s_cold:8.1f} ms/request (decoding too)")
    print(f"  (server compute_ms median {statistics.median(compute):.1f})")
    print(f"  ratio server/CLI: {s_flow / cli_ms:.2f}x page flow, {s_cold / cli_ms:.2f}x cold "
          f"(target <= 1.2x)")
    print(f"  cached layer switch (u8 map, {len(switch)} requests, {len(layers)} layers): "
          f"server p50 {pct(switch, 50):.2f} ms  p99 {pct(switch, 99):.2f} ms; "
          f"client p50 {pct(switch_client, 50):.2f} ms  p99 {pct(switch_client, 99):.2f} ms "
          f"(target <= 30 ms)")


def write_synthetic(directory, count):
    """COUNT binary PPMs unlike each other: stripes and gradients in other colours."""
    os.makedirs(directory)
    w, h = 160, 120
    for n in range(count):
        rows = bytearray()
        for y in range(h):
            for x in range(w):
                stripe = ((x + n * 7) // (8 + n)) % 2
                rows += bytes(((x * (n + 1)) % 256, (y * 2 + n * 40) % 256, 255 * stripe))
        with open(os.path.join(directory, f"synthetic{n:02d}.ppm"), "wb") as f:
            f.write(b"P6\n%d %d\n255\n" % (w, h) + bytes(rows))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["load", "bench"])
    p.add_argument("cnnviz")
    p.add_argument("model")
    p.add_argument("images", nargs="?", help="directory of images (or --synthetic N)")
    p.add_argument("--synthetic", type=int, default=0,
                   help="serve N generated 160x120 PPM images instead of a directory")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--time-limit", type=float, default=300)
    p.add_argument("--images", dest="n", type=int, default=10)
    p.add_argument("--switches", type=int, default=200)
    p.add_argument("--new-every", type=int, default=6,
                   help="one request in this many asks for maps never computed before")
    p.add_argument("--work", default="/tmp")
    args = p.parse_args()
    if args.clients < 1 or args.requests < 1 or args.requests > 100000 or args.new_every < 2:
        raise SystemExit("FAIL: --clients >= 1, 1 <= --requests <= 100000, --new-every >= 2")
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            args.images = os.path.join(tmp, "images")
            write_synthetic(args.images, args.synthetic)
        elif not args.images:
            raise SystemExit("FAIL: give an image directory or --synthetic N")
        load(args) if args.mode == "load" else bench(args)


if __name__ == "__main__":
    main()
