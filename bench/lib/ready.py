#!/usr/bin/env python3
"""Time to ready for fixtures/two-service, and a redeploy under a steady client.

previewd: `previewd up --repo COPY` (real Docker, real Caddy gateway). By hand: the same steps
one after another with the docker CLI (build the three images, create the network, start the
containers, poll the URL until 200). Both work on copies of the fixture whose files carry a
fresh nonce, so no build-cache layer of an earlier run can be hit ("cold"); the busybox base
image is local for both. "warm": one service (web) changed, the others unchanged (cache hits).
During previewd's warm update a client polls the live URL every 10 ms: failed requests must be 0.
"""
import argparse, json, os, pathlib, re, shutil, subprocess, sys, tempfile, threading, time, uuid
import urllib.request, urllib.error

ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--fixture", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--reps", type=int, default=1)
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-ready-"))
inst = f"bench{uuid.uuid4().hex[:6]}"
gw_port = 18000 + os.getpid() % 1000
env = dict(os.environ, PREVIEWD_INSTANCE=inst, PREVIEWD_DATA_DIR=str(work / "data"),
           PREVIEWD_GATEWAY_PORT=str(gw_port), PREVIEWD_GATEWAY_KEEP_RUNNING="true")
env.pop("PREVIEWD_CONFIG", None)
results = []


def emit(**kw):
    results.append(kw)
    with open(a.out, "a") as f:
        f.write(json.dumps(kw) + "\n")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def copy_fixture(name):
    d = work / name
    shutil.copytree(a.fixture, d)
    stamp(d, "web"); stamp(d, "api"); stamp(d, "internal")
    return d


def stamp(d, service):
    nonce = uuid.uuid4().hex
    if service == "api":
        with open(d / "api" / "serve.sh", "a") as f:
            f.write(f"# nonce {nonce}\n")
    else:
        with open(d / service / "index.html", "a") as f:
            f.write(f"<!-- nonce {nonce} -->\n")
    return nonce


def get(url, timeout=2.0):
    # *.localhost does not resolve through glibc: connect to 127.0.0.1 and send the Host.
    m = re.match(r"http://([^/:]+)(:\d+)?(/.*)?$", url)
    host, port, path = m.group(1), m.group(2) or "", m.group(3) or "/"
    req = urllib.request.Request(f"http://127.0.0.1{port}{path}", headers={"Host": host + port})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except Exception as e:
        return 0, type(getattr(e, "reason", e)).__name__.encode()


def previewd_up(repo):
    t0 = time.monotonic()
    p = subprocess.run([a.previewd, "up", "--repo", str(repo)], env=env, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"previewd up failed:\n{p.stdout}\n{p.stderr}")
    m = re.search(r"ready in ([\d.]+)s \(([^)]*)\)", p.stderr)
    phases = dict((k, float(v)) for k, v in re.findall(r"(\w+) ([\d.]+)s", m.group(2))) if m else {}
    url = re.search(r"(http://\S+)", p.stdout).group(1)
    return dt, phases, url


def by_hand(repo, tag, warm_only=None):
    """The same steps with the docker CLI, one after another. Returns seconds to 200."""
    net = f"{tag}-net"
    port = gw_port + 500
    t0 = time.monotonic()
    for s in ["web", "api", "internal"]:
        sh("docker", "build", "-q", "-t", f"{tag}-{s}", str(repo / s))
    if warm_only is None:
        sh("docker", "network", "create", net)
        sh("docker", "run", "-d", "--name", f"{tag}-internal", "--network", net,
           "--network-alias", "internal", f"{tag}-internal")
        sh("docker", "run", "-d", "--name", f"{tag}-api", "--network", net, "--network-alias", "api",
           "-e", "INTERNAL_URL=http://internal:7000", "-p", f"127.0.0.1:{port + 1}:3000", f"{tag}-api")
    if warm_only in (None, "web"):
        if warm_only:
            sh("docker", "rm", "-f", f"{tag}-web")
        sh("docker", "run", "-d", "--name", f"{tag}-web", "--network", net, "--network-alias", "web",
           "-p", f"127.0.0.1:{port}:8080", f"{tag}-web")
    for url in [f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port + 1}/api/health"]:
        end = time.monotonic() + 60
        while get(url, 1)[0] != 200:
            if time.monotonic() > end:
                sys.exit(f"by hand: {url} never answered")
            time.sleep(0.05)
    return time.monotonic() - t0


def cleanup_hand(tag):
    subprocess.run(["docker", "rm", "-f", f"{tag}-web", f"{tag}-api", f"{tag}-internal"], capture_output=True)
    subprocess.run(["docker", "network", "rm", f"{tag}-net"], capture_output=True)
    subprocess.run(["docker", "rmi", "-f", f"{tag}-web", f"{tag}-api", f"{tag}-internal"], capture_output=True)


def images():
    """service -> image id of this instance's previews (previewd tags <inst>-<id>-<service>:<hash>)."""
    out = subprocess.run(["docker", "images", "--filter", f"reference={inst}-*", "--format",
                          "{{.Repository}} {{.ID}}"], capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        repo, iid = line.split()
        if "-hand" not in repo:
            res.setdefault(repo.rsplit("-", 1)[1], set()).add(iid)
    return {k: tuple(sorted(v)) for k, v in res.items()}


def poller(url, stop, log):
    while not stop.is_set():
        t = time.monotonic()
        code, body = get(url, 5)
        log.append((t, code, body[-60:] if code != 200 else (b"nonce" in body and body[-60:])))
        time.sleep(0.01)


try:
    # A first preview creates the gateway container; reported on its own, not as "cold".
    first, fphases, _ = previewd_up(copy_fixture("prime"))
    emit(kind="first_ever", previewd_s=first, phases=fphases)
    subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
    print(f"  first preview on a fresh instance (gateway created): {first:.1f}s {fphases}", flush=True)
    for rep in range(a.reps):
        repo = copy_fixture(f"cold{rep}")
        pd, phases, url = previewd_up(repo)
        tag = f"{inst}-hand{rep}"
        hand = by_hand(copy_fixture(f"hand{rep}"), tag)
        emit(kind="cold", rep=rep, previewd_s=pd, hand_s=hand, phases=phases)
        print(f"  cold  previewd {pd:6.2f}s  by hand {hand:6.2f}s  ratio {pd / hand:.2f}x  {phases}", flush=True)
        # footprint: a reconcile (`previewd gc`) with this one preview live, by hyperfine
        hf = work / f"gc{rep}.json"
        subprocess.run(["hyperfine", "-N", "--runs", "5", "--warmup", "1", "--export-json", str(hf),
                        f"{a.previewd} gc"], env=env, capture_output=True)
        if hf.exists():
            g = json.loads(hf.read_text())["results"][0]
            emit(kind="gc", rep=rep, previews=1, mean_s=g["mean"], min_s=g["min"], max_s=g["max"])
            print(f"  previewd gc with 1 preview: mean {g['mean']*1e3:.0f} ms (min {g['min']*1e3:.0f}, max {g['max']*1e3:.0f})", flush=True)
        # warm: change web only, a client polling the live URL all along
        nonce = stamp(repo, "web")
        before = images()
        stop, log = threading.Event(), []
        th = threading.Thread(target=poller, args=(url, stop, log)); th.start()
        time.sleep(0.3)
        t_up = time.monotonic()
        wd, wphases, _ = previewd_up(repo)
        time.sleep(0.3)
        stop.set(); th.join()
        after = images()
        rebuilt = sorted(s for s in before if after.get(s) != before[s])
        failed = sum(1 for _, c, _ in log if c != 200)
        failures = [(round(t - t_up, 3), c or b.decode()) for t, c, b in log if c != 200]
        first_new = next((t for t, c, b in log if c == 200 and b and nonce.encode() in b), None)
        hand_dir = work / f"hand{rep}"
        stamp(hand_dir, "web")
        hw = by_hand(hand_dir, tag, warm_only="web")
        emit(kind="warm", rep=rep, previewd_s=wd, hand_s=hw, phases=wphases, cold_s=pd,
             polled=len(log), failed=failed, rebuilt=rebuilt, failures=failures[:50],
             new_seen_after_s=(first_new - t_up) if first_new else None)
        print(f"  warm  previewd {wd:6.2f}s  by hand {hw:6.2f}s  ratio {wd / hw:.2f}x  warm/cold {wd / pd:.2f}  rebuilt {rebuilt}  {wphases}", flush=True)
        if failures:
            print(f"  redeploy failures (s after up started, status; 0 = no answer): {failures[:20]}", flush=True)
        print(f"  redeploy: {len(log)} polls, {failed} failed, new commit served {first_new - t_up if first_new else float('nan'):.2f}s after `up` started", flush=True)
        subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
        cleanup_hand(tag)
finally:
    subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
    subprocess.run(["docker", "rm", "-f", f"{inst}-gateway"], capture_output=True)
    imgs = subprocess.run(["docker", "images", "-q", "--filter", f"reference={inst}-*"],
                          capture_output=True, text=True).stdout.split()
    if imgs:
        subprocess.run(["docker", "rmi", "-f", *imgs], capture_output=True)
    for rep in range(a.reps):
        cleanup_hand(f"{inst}-hand{rep}")
