#!/usr/bin/env python3
"""Footprint with N live previews, and the start-up reconcile with N previews.

`previewd serve` (release) against the fake GitHub (bench/lib/fakegh.py) and a git repository of
fixtures/two-service with N branches (identical content, one commit each, so after the first
preview every image is reused by its content hash). N signed `labeled` deliveries deploy N
previews through the real path. Measured:
- serve's RSS idle (before any delivery) and with the N previews live (after they settled);
- a restart of serve with N previews: time from process start to its start-up reconcile pass
  done (its `reconciled ... startup=true` debug line; the pass reads each PR back from GitHub,
  reconciles the Docker side and reloads the routes), then its RSS;
- `previewd gc` (the engine's reconcile on demand) by hyperfine, beside `docker ps` listing the
  same containers with their labels (the floor any reconcile pays), and the gateway's (Caddy)
  memory with N previews routed, from `docker stats`.

Preview networks: with `network.subnet_pool` (PREVIEWD_NETWORK_SUBNET_POOL) previewd picks a
/24 per network itself, so N=50 is not limited by Docker's default address pools (~31
networks). Whether the running previewd honours it is checked on the networks it created; if
not, N is capped at 20 and the result says so."""
import argparse, datetime, ipaddress, json, os, pathlib, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from common import LABEL, cleanup_instance, free_port, instance, sigterm_exits, status_kb, stop_server, wait_port
from fakegh import FakeGitHub, GitFixture, deliver, pr_event
from payloads import sign

ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--fixture", required=True)
ap.add_argument("--payloads", required=True)
ap.add_argument("--n", type=int, default=50)
ap.add_argument("--out", required=True)
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
sigterm_exits()
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-fifty-"))
inst = instance("f")
SECRET = "bench-fifty-secret"
POOL = os.environ.get("BENCH_SUBNET_POOL", "10.213.0.0/16")
CAP_WITHOUT_POOL = 20
notes = []


def emit(**kw):
    with open(a.out, "a") as f:
        f.write(json.dumps(kw) + "\n")


def mib(b):
    return b / 2**20


fake = FakeGitHub()
git = GitFixture(work / "git", a.fixture)
port, admin = free_port(), free_port()
env = dict(os.environ, PREVIEWD_INSTANCE=inst, PREVIEWD_DATA_DIR=str(work / "data"),
           PREVIEWD_LISTEN=f"127.0.0.1:{port}", PREVIEWD_ADMIN_LISTEN=f"127.0.0.1:{admin}",
           PREVIEWD_GATEWAY_PORT=str(free_port()), PREVIEWD_LIMITS_MAX_PREVIEWS=str(a.n + 5),
           PREVIEWD_GITHUB_WEBHOOK_SECRET=SECRET, PREVIEWD_GITHUB_TOKEN="bench-token",
           PREVIEWD_GITHUB_API_URL=fake.url, PREVIEWD_GITHUB_GIT_URL=git.url,
           PREVIEWD_TRIGGERS_LABELS="preview", PREVIEWD_NETWORK_SUBNET_POOL=POOL,
           NO_COLOR="1")
env.pop("PREVIEWD_CONFIG", None)
procs = []


def start_serve(name, debug=False):
    """serve at its default log level; with debug, its reconciler's "reconciled" line shows."""
    log = open(work / f"{name}.log", "wb")
    e = dict(env, PREVIEWD_LOG="previewd=debug,warn") if debug else env
    t_wall, t0 = time.time(), time.monotonic()
    p = subprocess.Popen([a.previewd, "serve"], env=e, stdout=log, stderr=log)
    procs.append(p)
    try:
        wait_port(port, p)
    except SystemExit:
        return None, work / f"{name}.log", t_wall, t0
    return p, work / f"{name}.log", t_wall, t0


stop = stop_server


def networks():
    """(in the pool, outside it) counts of this instance's networks, and their subnets."""
    ids = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label={LABEL}={inst}"],
                         capture_output=True, text=True).stdout.split()
    if not ids:
        return 0, 0, []
    out = subprocess.run(["docker", "network", "inspect", "--format",
                          "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
                         capture_output=True, text=True).stdout.splitlines()
    pool = ipaddress.ip_network(POOL)
    inside = outside = 0
    subnets = []
    for line in out:
        parts = line.split()
        for s in parts[1:]:
            subnets.append(s)
            net = ipaddress.ip_network(s, strict=False)
            if net.version == pool.version and net.subnet_of(pool):
                inside += 1
            else:
                outside += 1
    return inside, outside, subnets


def plain(path):
    return re.sub(r"\x1b\[[\d;]*m", "", path.read_text(errors="replace"))


def log_time(path, pattern):
    """Wall-clock time (s since the epoch) of the first log line matching pattern."""
    for line in plain(path).splitlines():
        if re.search(pattern, line):
            m = re.match(r"\s*(\d{4}-\d\d-\d\dT[\d:.]+)Z", line)
            if m:
                ts = m.group(1)
                if "." in ts:
                    head, frac = ts.split(".")
                    ts = f"{head}.{frac[:6]}"
                return datetime.datetime.fromisoformat(ts).replace(tzinfo=datetime.timezone.utc).timestamp()
    return None


def deploy(numbers):
    """One `labeled` delivery per PR, all at once; waits for every final status."""
    shas = {}
    t0 = time.monotonic()
    for i in numbers:
        branch = f"pr{i}"
        git.branch(branch)
        shas[i] = git.commit(f"preview {i}")   # empty commit: same content, its own sha
    t_sent = time.monotonic()
    for i in numbers:
        code, _ = deliver(port, SECRET, "pull_request", pr_event(fake, a.payloads, "labeled", i, f"pr{i}", shas[i]), sign)
        if code != 202:
            sys.exit(f"delivery for PR #{i} answered {code}")
    final = lambda i: (fake.status(shas[i], "success") or fake.status(shas[i], "failure")
                       or fake.status(shas[i], "error"))
    fake.wait(lambda: all(final(i) for i in numbers), 120 + 15 * len(numbers), f"final statuses of {len(numbers)} PRs")
    bad = [(i, final(i)["state"], final(i).get("description")) for i in numbers if final(i)["state"] != "success"]
    return time.monotonic() - t_sent, bad, t_sent - t0


try:
    s, slog, _, _ = start_serve("serve1")
    if s is None:
        # A previewd that refuses the variable (an unknown or invalid key): the old behaviour.
        notes.append(f"serve refused PREVIEWD_NETWORK_SUBNET_POOL={POOL}: "
                     + slog.read_text(errors="replace")[-300:].strip())
        env.pop("PREVIEWD_NETWORK_SUBNET_POOL")
        s, slog, _, _ = start_serve("serve1b")
        if s is None:
            sys.exit(f"serve does not start; see {slog}")
    time.sleep(2)
    idle = status_kb(s.pid, "VmRSS")
    print(f"  serve idle: RSS {mib(idle):.1f} MiB", flush=True)
    n = a.n
    dt1, bad, _ = deploy([1])
    if bad:
        sys.exit(f"the first preview failed: {bad}; see {slog}")
    inside, outside, subnets = networks()
    pool_used = inside > 0 and outside == 0
    if not pool_used:
        notes.append(f"network.subnet_pool not honoured by this previewd (networks {subnets}, not in {POOL})"
                     + (f": N capped at {CAP_WITHOUT_POOL}, Docker's default address pools hold ~31 networks"
                        if n > CAP_WITHOUT_POOL else ""))
        n = min(n, CAP_WITHOUT_POOL)
    print(f"  first preview {dt1:.1f}s; networks {subnets} ({'in' if pool_used else 'NOT in'} {POOL})", flush=True)
    dtn, bad, git_s = deploy(list(range(2, n + 1)))
    print(f"  {n - 1} more previews: {dtn:.0f}s from the deliveries to the last status"
          f" ({len(bad)} failed{': ' + str(bad[:3]) if bad else ''})", flush=True)
    live = n - len(bad)
    time.sleep(5)
    inside, outside, _ = networks()
    rss_live, hwm_live = status_kb(s.pid, "VmRSS"), status_kb(s.pid, "VmHWM")
    print(f"  serve with {live} live previews (it deployed them): RSS {mib(rss_live):.1f} MiB, peak {mib(hwm_live):.1f} MiB;"
          f" networks: {inside} in the pool, {outside} outside", flush=True)
    stop(s)
    # Restart: the start-up reconcile with N previews.
    n_req = len(fake.requests)
    s, slog, t_wall, t0 = start_serve("serve2", debug=True)
    if s is None:
        sys.exit(f"serve does not restart; see {slog}")
    end = time.monotonic() + 120
    t_seen = None
    while time.monotonic() < end:
        txt = plain(slog)
        if re.search(r"reconciled.*startup=true", txt):
            t_seen = time.monotonic() - t0
            break
        if re.search(r"reconcile failed", txt) and not any("reconcile failed" in x for x in notes):
            notes.append("the start-up reconcile failed once: " + [l for l in txt.splitlines() if "reconcile failed" in l][0][-300:])
        time.sleep(0.01)
    t_log = log_time(slog, r"reconciled.*startup=true")
    reconcile_s = (t_log - t_wall) if t_log else t_seen
    serving = log_time(slog, r"serving webhooks")
    gets = [r for r in fake.requests[n_req:] if r["op"] == "pulls/get"]
    time.sleep(3)
    rss_after, hwm_after = status_kb(s.pid, "VmRSS"), status_kb(s.pid, "VmHWM")
    stop(s)
    print(f"  restart with {live} previews: start-up reconcile done {reconcile_s if reconcile_s is not None else float('nan'):.2f}s after"
          f" the process started ({len(gets)} PRs read back); RSS then {mib(rss_after):.1f} MiB (peak {mib(hwm_after):.1f})", flush=True)
    # previewd gc (the engine's reconcile, on demand) beside the docker listing floor.
    hf = work / "gc.json"
    shutil.which("hyperfine") and subprocess.run(["hyperfine", "-N", "--runs", "5", "--warmup", "1", "--export-json", str(hf),
                    f"{a.previewd} gc",
                    f"docker ps -a --no-trunc --filter label={LABEL}={inst} --format '{{{{.ID}}}} {{{{.Labels}}}}'"],
                   env=env, capture_output=True)
    res = json.loads(hf.read_text())["results"] if hf.exists() else []
    gc = res[0] if res else None
    ps = res[1] if len(res) > 1 else None
    gw = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", f"{inst}-gateway"],
                        capture_output=True, text=True).stdout.strip().split("/")[0].strip()
    if gc:
        print(f"  previewd gc with {live} previews: mean {gc['mean']*1e3:.0f} ms (min {gc['min']*1e3:.0f}, max {gc['max']*1e3:.0f});"
              f" docker ps of the same containers: {ps['mean']*1e3:.0f} ms; gateway (Caddy) memory {gw}", flush=True)
    emit(kind="fifty", n=live, requested=a.n, pool=POOL if pool_used else None,
         networks_in_pool=inside, networks_outside=outside,
         rss_idle=idle, rss=rss_live, hwm=hwm_live, rss_after_restart=rss_after, hwm_after_restart=hwm_after,
         deploy_s=dtn, first_s=dt1, failed=bad[:5],
         reconcile_s=reconcile_s, reconcile_seen_s=t_seen,
         serving_after_s=(serving - t_wall) if serving else None, prs_read=len(gets),
         gc_mean_s=gc and gc["mean"], gc_min_s=gc and gc["min"], gc_max_s=gc and gc["max"],
         ps_mean_s=ps and ps["mean"], gateway_mem=gw, notes=notes)
    for note in notes:
        print(f"  note: {note}", flush=True)
finally:
    for p in procs:
        stop(p)
    # previewd's own orderly removal first (force-removing 150 containers at once once left
    # Docker 20.10 with a stale endpoint on a network), then any leftover.
    cleanup_instance(inst, a.previewd, env)
    fake.close()
