#!/usr/bin/env python3
"""Sleeping previews (issue 19), side by side in one run:

- wake time: a sleeping fixtures/two-service preview (`previewd sleep`), then the first request
  through the gateway until the preview's full answer, p50/p95 over --reps sleeps, against the
  cold time to ready of the same app in the same run (`previewd down` + `previewd up` with the
  images already built: what a preview without sleeping costs to bring back); and 50 first
  requests at once on a sleeping preview, failed ones counted;
- density: --n previews of the sample, all awake, then all but a tenth asleep: memory of all
  preview containers (docker stats) and previewd serve's RSS;
- cost to the awake: wrk through the gateway to an awake preview with sleeping on (the gateway
  writes its access log to serve) and off (`limits.idle_sleep = 0`: no access log), in turn,
  p50/p99.

`previewd serve` runs throughout (a visit to a sleeping preview needs it) against the fake
GitHub (bench/lib/fakegh.py), with `idle_sleep` long enough that only the bench puts previews to
sleep. Everything made belongs to the instance this script names; it is removed at the end."""
import argparse, concurrent.futures, json, os, pathlib, re, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from common import LABEL, cleanup_instance, free_port, instance, sigterm_exits, status_kb, stop_server, wait_port
from fakegh import FakeGitHub

ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--fixture", required=True)
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--n", type=int, default=50)
ap.add_argument("--duration", type=int, default=5)
ap.add_argument("--out", required=True)
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
sigterm_exits()
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-sleep-"))
inst = instance("s")
fake = FakeGitHub()
port, admin, gw = free_port(), free_port(), free_port()
env = dict(os.environ, PREVIEWD_INSTANCE=inst, PREVIEWD_DATA_DIR=str(work / "data"),
           PREVIEWD_LISTEN=f"127.0.0.1:{port}", PREVIEWD_ADMIN_LISTEN=f"127.0.0.1:{admin}",
           PREVIEWD_GATEWAY_PORT=str(gw), PREVIEWD_LIMITS_MAX_PREVIEWS=str(a.n + 5),
           PREVIEWD_LIMITS_IDLE_SLEEP="24h",
           PREVIEWD_GITHUB_WEBHOOK_SECRET="bench-sleep", PREVIEWD_GITHUB_TOKEN="bench-token",
           PREVIEWD_GITHUB_API_URL=fake.url,
           PREVIEWD_NETWORK_SUBNET_POOL=os.environ.get("BENCH_SUBNET_POOL", "10.214.0.0/16"),
           NO_COLOR="1")
env.pop("PREVIEWD_CONFIG", None)
AGENT = {"User-Agent": "previewd-bench/1"}


def emit(**kw):
    print(json.dumps(kw), flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(kw) + "\n")


def cli(*args, e=None, check=True):
    r = subprocess.run([a.previewd, *args], env=e or env, capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        sys.exit(f"previewd {' '.join(args)}: {r.stderr.strip()}")
    return r


def up(folder):
    t0 = time.monotonic()
    out = cli("up", "--repo", str(folder), "--json").stdout
    return json.loads(out)["id"], time.monotonic() - t0


def visit(pid, path="/", timeout=200):
    """One GET as a visitor (not previewd's probe): (status, body, seconds)."""
    import urllib.request, urllib.error
    req = urllib.request.Request(f"http://127.0.0.1:{gw}{path}", headers={"Host": f"{pid}.localhost:{gw}", **AGENT})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - t0
    except Exception as e:
        return 0, repr(e).encode(), time.monotonic() - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def containers_mib():
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label={LABEL}={inst}",
                          "--filter", "label=dev.previewd.role=service"], capture_output=True, text=True).stdout.split()
    if not ids:
        return 0.0, 0
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
                         capture_output=True, text=True).stdout.splitlines()
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    total = 0.0
    for line in out:
        m = re.match(r"([\d.]+)(\w+)", line.split("/")[0].strip())
        if m:
            total += float(m.group(1)) * units.get(m.group(2), 0)
    return total, len(ids)


def wrk(pid):
    r = subprocess.run(["wrk", "-t1", "-c8", f"-d{a.duration}s", "--latency", "-H", f"Host: {pid}.localhost",
                        f"http://127.0.0.1:{gw}/"], capture_output=True, text=True)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", r.stdout, re.M))
    def ms(s):
        v, u = re.match(r"([\d.]+)(\w+)", s).groups()
        return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    return dict(p50_ms=ms(lat["50"]), p99_ms=ms(lat["99"]), rps=float(rps.group(1)) if rps else None,
                non_2xx=int(errors.group(1)) if errors else 0)


serve = None
try:
    log = open(work / "serve.log", "wb")
    serve = subprocess.Popen([a.previewd, "serve"], env=env, stdout=log, stderr=log)
    wait_port(port, serve)
    app = work / "app"
    shutil.copytree(a.fixture, app)

    # Cold time to ready of the same app, images built once first.
    pid, first = up(app)
    colds = []
    for _ in range(max(3, a.reps // 3)):
        cli("down", pid)
        pid, t = up(app)
        colds.append(t)
    emit(part="cold", first_up_s=round(first, 2), cold_s=[round(x, 3) for x in colds],
         cold_p50_s=round(statistics.median(colds), 3))

    # Wake time: sleep, then the first request until the full answer.
    wakes, failed = [], 0
    for _ in range(a.reps):
        cli("sleep", pid)
        code, body, t = visit(pid, "/api/hello")
        if code != 200 or b"internal says" not in body:
            failed += 1
        wakes.append(t)
    cold = statistics.median(colds)
    emit(part="wake", wake_s=[round(x, 3) for x in wakes], wake_p50_s=round(pct(wakes, 50), 3),
         wake_p95_s=round(pct(wakes, 95), 3), cold_p50_s=round(cold, 3),
         p95_over_cold=round(pct(wakes, 95) / cold, 3), failed=failed)

    # 50 first requests at once.
    cli("sleep", pid)
    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        answers = list(ex.map(lambda i: visit(pid, "/" if i % 2 else "/api/hello"), range(50)))
    bad = [(c, b[:80].decode(errors="replace")) for c, b, _ in answers if c != 200]
    emit(part="wake_concurrent", requests=50, failed=len(bad), failures=bad[:5],
         slowest_s=round(max(t for _, _, t in answers), 3))

    # Cost to the awake: sleeping on (access log to serve) and off, in turn.
    off = dict(env, PREVIEWD_LIMITS_IDLE_SLEEP="0")
    cells = {"on": [], "off": []}
    if not shutil.which("wrk"):
        emit(part="awake_cost", skipped="wrk is not installed")
    for _ in range(2 if shutil.which("wrk") else 0):
        for mode, e in (("off", off), ("on", env)):
            cli("gc", e=e)  # the gateway's config follows the settings: the access log comes or goes
            visit(pid)
            cells[mode].append(wrk(pid))
    summary = {} if not cells["on"] else {m: dict(p50_ms=round(statistics.median(c["p50_ms"] for c in cs), 3),
                       p99_ms=round(statistics.median(c["p99_ms"] for c in cs), 3),
                       rps=round(statistics.median(c["rps"] for c in cs), 1),
                       non_2xx=sum(c["non_2xx"] for c in cs)) for m, cs in cells.items()}
    if summary:
        emit(part="awake_cost", cells=cells, summary=summary,
             p50_on_over_off=round(summary["on"]["p50_ms"] / summary["off"]["p50_ms"], 3),
             p99_on_over_off=round(summary["on"]["p99_ms"] / summary["off"]["p99_ms"], 3))

    # Density: n previews awake, then all but a tenth asleep.
    ids = [pid]
    for i in range(1, a.n):
        d = work / f"app{i}"
        shutil.copytree(a.fixture, d)
        ids.append(up(d)[0])
    time.sleep(3)  # containers settle after their health checks
    awake_mib, awake_n = containers_mib()
    awake_rss = status_kb(serve.pid, "VmRSS") / 2**20
    keep = max(1, a.n // 10)
    for i in ids[keep:]:
        cli("sleep", i)
    time.sleep(3)
    asleep_mib, asleep_n = containers_mib()
    asleep_rss = status_kb(serve.pid, "VmRSS") / 2**20
    emit(part="density", previews=a.n, asleep=a.n - keep,
         all_awake=dict(containers_running=awake_n, containers_mib=round(awake_mib, 1), serve_rss_mib=round(awake_rss, 1)),
         mostly_asleep=dict(containers_running=asleep_n, containers_mib=round(asleep_mib, 1), serve_rss_mib=round(asleep_rss, 1)),
         memory_ratio=round(asleep_mib / awake_mib, 3) if awake_mib else None)
finally:
    stop_server(serve)
    cleanup_instance(inst, a.previewd, env)
    fake.close()
    shutil.rmtree(work, ignore_errors=True)
