#!/usr/bin/env python3
"""BuildKit against the classic builder, inside previewd and by hand, cold and warm, in one run
(issue 25). fixtures/two-service as in ready.py: cold = fresh copies whose files carry a nonce
(no layer cache hit), warm = web changed only. previewd's figure is time to ready: from
starting `previewd up` to its `ready in` line (the new generation live, routed, healthy); the
time until `up` exits, after the old generation drained and went, is printed beside it. The
hand run's is from its first step to both URLs answering 200.

previewd/BuildKit: `previewd up` as shipped. previewd/classic: the same binary talking to Docker
through a proxy this script runs that refuses `POST /build?version=2` the way a daemon without
BuildKit does, so previewd falls back to the classic builder (every other request is forwarded
untouched). By hand: the docker CLI steps of ready.py, the images built through the Engine API
with version=2 (BuildKit; the CLI here has no buildx) or version=1 (classic).
"""
import argparse, http.client, io, json, os, pathlib, re, socket, subprocess, sys, tarfile, tempfile, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from common import by_hand, cleanup_hand, cleanup_instance, copy_fixture, instance, previewd_up, sigterm_exits, stamp

DOCKER_SOCK = "/var/run/docker.sock"
ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--fixture", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--reps", type=int, default=1)
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
sigterm_exits()
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-builders-"))


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("docker")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api_build(version):
    """A `build(tag, folder)` for common.by_hand: POST /build with `version`, to the end."""
    def build(tag, folder):
        buf = io.BytesIO()
        # GNU headers: BuildKit 0.8 (Docker 20.10) reads a PAX tar (Python's default) as a Dockerfile.
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            t.add(folder, arcname=".")
        c = UnixHTTP(DOCKER_SOCK)
        c.request("POST", f"/v1.41/build?t={tag}&version={version}&rm=1&forcerm=1", body=buf.getvalue(),
                  headers={"Content-Type": "application/x-tar"})
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        if r.status != 200 or '"errorDetail"' in body:
            sys.exit(f"by hand: build of {tag} (version {version}) failed: {body[-500:]}")
    return build


def refusing_proxy(path):
    """Forwards connections on `path` to Docker; a connection whose first request is a BuildKit
    build gets the refusal of a daemon without BuildKit."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path)); srv.listen(64)

    def pipe(src, dst):
        try:
            while (b := src.recv(65536)):
                dst.sendall(b)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass

    def handle(client):
        head = b""
        while b"\r\n" not in head:
            b = client.recv(65536)
            if not b:
                return client.close()
            head += b
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if re.match(r"POST /v[\d.]+/build\?\S*\bversion=2\b", line):
            msg = b'{"message":"buildkit not supported by daemon"}'
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: "
                           + str(len(msg)).encode() + b"\r\nConnection: close\r\n\r\n" + msg)
            return client.close()
        d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); d.connect(DOCKER_SOCK)
        d.sendall(head)
        threading.Thread(target=pipe, args=(d, client), daemon=True).start()
        pipe(client, d)

    def accept():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()


proxy = work / "classic.sock"
refusing_proxy(proxy)
inst = instance("")
gw_port = 18000 + os.getpid() % 1000
env = dict(os.environ, PREVIEWD_INSTANCE=inst, PREVIEWD_DATA_DIR=str(work / "data"),
           PREVIEWD_GATEWAY_PORT=str(gw_port), PREVIEWD_GATEWAY_KEEP_RUNNING="true")
env.pop("PREVIEWD_CONFIG", None)
VARIANTS = {"buildkit": dict(env), "classic": dict(env, DOCKER_HOST=f"unix://{proxy}")}


def emit(**kw):
    with open(a.out, "a") as f:
        f.write(json.dumps(kw) + "\n")


def up(repo, variant):
    ready, phases, exited, _ = previewd_up(a.previewd, repo, VARIANTS[variant])
    phases["exit"] = round(exited, 2)
    return ready, phases


tags = []
try:
    up(copy_fixture(a.fixture, work / "prime"), "buildkit")  # creates the gateway; not counted
    subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
    for rep in range(a.reps):
        row = {}
        repos = {}
        for v in VARIANTS:
            repos[v] = copy_fixture(a.fixture, work / f"{v}{rep}")
            row[("previewd", v, "cold")] = up(repos[v], v)
        for v, version in [("buildkit", 2), ("classic", 1)]:
            tag = f"{inst}-hand{v}{rep}"; tags.append(tag)
            hand_dir = copy_fixture(a.fixture, work / f"hand{v}{rep}")
            row[("hand", v, "cold")] = (by_hand(hand_dir, tag, gw_port + 500, build=api_build(version)), {})
            stamp(hand_dir, "web")
            row[("hand", v, "warm")] = (by_hand(hand_dir, tag, gw_port + 500, warm_only="web", build=api_build(version)), {})
            cleanup_hand(tag)
        for v in VARIANTS:
            stamp(repos[v], "web")
            row[("previewd", v, "warm")] = up(repos[v], v)
        subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
        for (who, v, kind), (s, phases) in row.items():
            emit(rep=rep, who=who, builder=v, kind=kind, seconds=s, phases=phases)
        for kind in ["cold", "warm"]:
            pb, pc = row[("previewd", "buildkit", kind)][0], row[("previewd", "classic", kind)][0]
            hb, hc = row[("hand", "buildkit", kind)][0], row[("hand", "classic", kind)][0]
            print(f"  {kind}: previewd BuildKit {pb:6.2f}s classic {pc:6.2f}s (BuildKit/classic {pb / pc:.2f}x)"
                  f" | by hand BuildKit {hb:6.2f}s classic {hc:6.2f}s | previewd/hand BuildKit {pb / hb:.2f}x"
                  f" classic {pc / hc:.2f}x", flush=True)
            print(f"      phases BuildKit {row[('previewd', 'buildkit', kind)][1]}  classic {row[('previewd', 'classic', kind)][1]}", flush=True)
finally:
    cleanup_instance(inst, a.previewd, env)
    for t in tags:
        cleanup_hand(t)
