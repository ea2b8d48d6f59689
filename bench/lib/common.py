"""Shared by the bench scripts: the hand-run baseline (docker CLI, one step after another),
fixture copies with fresh nonces, a polling client with failure kinds, and clean-up of an
instance by its label (dev.previewd.instance) so nothing of another instance is touched."""
import collections, os, re, shutil, signal, socket, statistics, subprocess, sys, threading, time, urllib.error, urllib.request, uuid

LABEL = "dev.previewd.instance"
# The hand-run baseline's containers and network carry this label (not previewd's, so previewd
# never takes them for its own), for bench/run's trap.
HAND_LABEL = "bench.previewd.run"


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


_given = set()


def free_port():
    """A port for something that binds it later (a gateway's published port, a server).

    Picked below the kernel's ephemeral range: a port from bind(0) is as likely to be taken by
    the next outgoing connection before Docker or the server binds it."""
    import random
    try:
        low_eph = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low_eph = 32768
    for _ in range(1000):
        p = random.randrange(20000, max(low_eph, 20001))
        if p in _given:
            continue
        try:
            for ip in ("127.0.0.1", "0.0.0.0"):
                s = socket.socket(); s.bind((ip, p)); s.close()
        except OSError:
            s.close(); continue
        _given.add(p); return p
    raise SystemExit("no free port below the ephemeral range")


def wait_port(port, proc=None, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited early (rc {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def stop_server(p):
    """SIGTERM to a `previewd serve` still running, then up to 30 s for it to drain and exit."""
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()


def sigterm_exits():
    """SIGTERM (bench/run's trap, a timeout) unwinds like Ctrl-C, so `finally` cleans up."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def stamp(d, service):
    """Appends a fresh nonce to one service's file: its build context changes, no cache hit."""
    nonce = uuid.uuid4().hex
    if service == "api":
        with open(d / "api" / "serve.sh", "a") as f:
            f.write(f"# nonce {nonce}\n")
    else:
        with open(d / service / "index.html", "a") as f:
            f.write(f"<!-- nonce {nonce} -->\n")
    return nonce


def copy_fixture(fixture, d):
    shutil.copytree(fixture, d)
    for s in ["web", "api", "internal"]:
        stamp(d, s)
    return d


def get(url, timeout=2.0):
    """(status, body); status 0 and the error's kind as body when there is no HTTP answer.
    *.localhost does not resolve through glibc: connect to 127.0.0.1 and send the Host."""
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


def poller(url, stop, log):
    """GET url every 10 ms until stop; log gets (t, status, body tail or error kind)."""
    while not stop.is_set():
        t = time.monotonic()
        code, body = get(url, 5)
        log.append((t, code, body[-80:]))
        time.sleep(0.01)


def failure_summary(log, t0):
    """Failed polls: count, kinds (error class, or `HTTP <code>`), the window they fall in
    (seconds after t0) and the first few, for the report."""
    fails = [(t - t0, c, b) for t, c, b in log if c != 200]
    kind = lambda c, b: f"HTTP {c}" if c else b.decode(errors="replace")
    kinds = collections.Counter(kind(c, b) for _, c, b in fails)
    return dict(polled=len(log), failed=len(fails), kinds=dict(kinds.most_common()),
                first_fail_s=round(fails[0][0], 3) if fails else None,
                last_fail_s=round(fails[-1][0], 3) if fails else None,
                failures=[(round(t, 3), kind(c, b)) for t, c, b in fails[:50]])


def swap_summary(log, nonce, t0):
    """The switch as the polling client saw it: first answer with the new commit's nonce (s
    after t0), the gap from the last old answer before it (ms), and old answers after it."""
    new = nonce.encode()
    first = next((i for i, (t, c, b) in enumerate(log) if c == 200 and new in b), None)
    if first is None:
        return dict(new_seen_after_s=None, swap_gap_ms=None, old_after_new=None)
    last_old = next((log[i][0] for i in range(first - 1, -1, -1) if log[i][1] == 200), None)
    return dict(new_seen_after_s=log[first][0] - t0,
                swap_gap_ms=(log[first][0] - last_old) * 1e3 if last_old is not None else None,
                old_after_new=sum(1 for t, c, b in log[first + 1:] if c == 200 and new not in b))


def previewd_up(previewd, repo, env):
    """Runs `previewd up --repo REPO`. Returns (time to ready, the phases of its `ready in` line,
    time until it exited, its stdout). Time to ready ends when `up` prints that line: the new
    generation is live, routed and healthy; `up` exits after the generation it replaced has
    drained and gone."""
    t0 = time.monotonic()
    p = subprocess.Popen([previewd, "up", "--repo", str(repo)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    reader.start()
    ready, err = None, []
    for line in p.stderr:
        err.append(line)
        if ready is None and line.startswith("ready in "):
            ready = time.monotonic() - t0
    p.wait()
    reader.join()
    exited = time.monotonic() - t0
    stdout = "".join(out)
    if p.returncode != 0 or ready is None:
        sys.exit(f"previewd up failed:\n{stdout}\n{''.join(err)}")
    m = re.search(r"ready in ([\d.]+)s \(([^)]*)\)", "".join(err))
    phases = dict((k, float(v)) for k, v in re.findall(r"(\w+) ([\d.]+)s", m.group(2))) if m else {}
    return ready, phases, exited, stdout


def by_hand(repo, tag, port, warm_only=None, build=None):
    """The same steps with the docker CLI, one after another. Returns seconds to 200.
    `build(tag, folder)` replaces `docker build` (the CLI here has no buildx, so a BuildKit
    hand run builds through the Engine API: bench/lib/builders.py)."""
    net = f"{tag}-net"
    lab = ["--label", f"{HAND_LABEL}={tag}"]
    tags = [f"{tag}-{s}" for s in ["web", "api", "internal"]]
    before = image_ids(tags)
    t0 = time.monotonic()
    for s in ["web", "api", "internal"]:
        if build:
            build(f"{tag}-{s}", repo / s)
        else:
            sh("docker", "build", "-q", "-t", f"{tag}-{s}", str(repo / s))
    if warm_only is None:
        sh("docker", "network", "create", *lab, net)
        sh("docker", "run", "-d", *lab, "--name", f"{tag}-internal", "--network", net,
           "--network-alias", "internal", f"{tag}-internal")
        sh("docker", "run", "-d", *lab, "--name", f"{tag}-api", "--network", net, "--network-alias", "api",
           "-e", "INTERNAL_URL=http://internal:7000", "-p", f"127.0.0.1:{port + 1}:3000", f"{tag}-api")
    if warm_only in (None, "web"):
        if warm_only:
            sh("docker", "rm", "-f", f"{tag}-web")
        sh("docker", "run", "-d", *lab, "--name", f"{tag}-web", "--network", net, "--network-alias", "web",
           "-p", f"127.0.0.1:{port}:8080", f"{tag}-web")
    for url in [f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port + 1}/api/health"]:
        end = time.monotonic() + 60
        while get(url, 1)[0] != 200:
            if time.monotonic() > end:
                sys.exit(f"by hand: {url} never answered")
            time.sleep(0.05)
    took = time.monotonic() - t0
    # A rebuilt image takes the tag from the one before, which would stay behind untagged.
    stale = before - image_ids(tags)
    if stale:
        subprocess.run(["docker", "rmi", *stale], capture_output=True)
    return took


def image_ids(tags):
    """The image ids the given tags name now (tags that do not exist are left out)."""
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", *tags],
                         capture_output=True, text=True).stdout
    return set(out.split())


def cleanup_hand(tag):
    subprocess.run(["docker", "rm", "-f", f"{tag}-web", f"{tag}-api", f"{tag}-internal"], capture_output=True)
    subprocess.run(["docker", "network", "rm", f"{tag}-net"], capture_output=True)
    subprocess.run(["docker", "rmi", "-f", f"{tag}-web", f"{tag}-api", f"{tag}-internal"], capture_output=True)


def images(inst):
    """service -> image ids of this instance's previews (previewd tags <inst>-<id>-<service>:<hash>)."""
    out = subprocess.run(["docker", "images", "--filter", f"reference={inst}-*", "--format",
                          "{{.Repository}} {{.ID}}"], capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        repo, iid = line.split()
        if "-hand" not in repo:
            res.setdefault(repo.rsplit("-", 1)[1], set()).add(iid)
    return {k: tuple(sorted(v)) for k, v in res.items()}


def cleanup_instance(inst, previewd=None, env=None):
    """Removes everything of instance `inst` (and only of it): `previewd down --all`, then any
    container and network labelled with it, then its images."""
    if previewd and env:
        subprocess.run([previewd, "down", "--all"], env=env, capture_output=True, timeout=300)
    q = lambda *c: subprocess.run(c, capture_output=True, text=True).stdout.split()
    cs = q("docker", "ps", "-aq", "--filter", f"label={LABEL}={inst}")
    if cs:
        subprocess.run(["docker", "rm", "-f", *cs], capture_output=True)
    subprocess.run(["docker", "rm", "-f", f"{inst}-gateway"], capture_output=True)
    # A network can stay "in use" for a moment after its containers went: retried.
    for _ in range(5):
        ns = q("docker", "network", "ls", "-q", "--filter", f"label={LABEL}={inst}")
        if not ns:
            break
        r = subprocess.run(["docker", "network", "rm", *ns], capture_output=True, text=True)
        if r.returncode == 0:
            break
        time.sleep(1)
    else:
        print(f"  clean-up: could not remove networks of {inst}: {r.stderr.strip()[-300:]}", flush=True)
    imgs = q("docker", "images", "-q", "--filter", f"reference={inst}-*")
    if imgs:
        subprocess.run(["docker", "rmi", "-f", *set(imgs)], capture_output=True)


def status_kb(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def instance(default_suffix):
    """The instance name: bench/run passes BENCH_RUN (bench<hex>) so its trap can find what a
    killed script left; the name starts with "bench" (it sorts before Docker's "bridge")."""
    run = os.environ.get("BENCH_RUN") or f"bench{uuid.uuid4().hex[:6]}"
    return f"{run}{default_suffix}"


def ingest_cells(rows):
    """Ingest lines by (target, scenario, conc). A cell measured in several repetitions (each
    previewd's run next to webhook's, in turn) gets the median of each figure, so one noisy
    moment of the machine does not decide it; the spread of req/s and p99 is kept beside it."""
    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["target"], r["scenario"], r["conc"])].append(r)
    cells = {}
    for key, rs in groups.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        c = dict(rs[0])
        c.update(reps=len(rs), rps=med("rps"), p50_us=med("p50_us"), p99_us=med("p99_us"),
                 rps_min=min(r["rps"] for r in rs), rps_max=max(r["rps"] for r in rs),
                 p99_min_us=min(r["p99_us"] for r in rs), p99_max_us=max(r["p99_us"] for r in rs),
                 requests=sum(r["requests"] for r in rs), errors=sum(r["errors"] for r in rs),
                 non2xx=sum(r["non2xx"] for r in rs), hwm=max(r["hwm"] for r in rs))
        if all("cpu_us_per_req" in r for r in rs):
            c.update(cpu_us_per_req=med("cpu_us_per_req"), wrk_cpu_us_per_req=med("wrk_cpu_us_per_req"))
        if "outcomes" in c:
            c["outcomes"] = dict(sum((collections.Counter(r.get("outcomes", {})) for r in rs), collections.Counter()))
        cells[key] = c
    return cells


# What each ingest scenario's deliveries must become in previewd (its /metrics outcomes).
EXPECTED_OUTCOME = {"pr_ignored": "ignored", "pr_queued": "queued", "push_1mib": "ignored",
                    "bad_sig": "unauthorized"}


def outcome_problems(rows):
    """Why one cell's repetitions did not measure its scenario's path: previewd's /metrics
    counted deliveries with another outcome (a mapping that ignores what should be queued is
    cheaper and would flatter the figure), or fewer of the expected one than wrk counted."""
    rs = [r for r in rows if "outcomes" in r]
    if not rs:
        return []
    want = EXPECTED_OUTCOME[rs[0]["scenario"]]
    got = collections.Counter()
    for r in rs:
        got.update(r["outcomes"])
    problems = [f"{n} {k}" for k, n in got.items() if k != want and n]
    if got[want] < 0.99 * sum(r["requests"] for r in rs):
        problems.append(f"{got[want]} {want} of {sum(r['requests'] for r in rs)} answered")
    return problems


def versus_cells(rows, base, others):
    """Cells of `base` and `others` (targets measured in turn in one run), by (scenario, conc):
    {key: {target: cell}}, each cell with its outcome problems."""
    cells = ingest_cells(rows)
    res = collections.defaultdict(dict)
    for (t, s, c), cell in cells.items():
        if t in [base] + others:
            cell["outcome_problems"] = outcome_problems(
                [r for r in rows if (r["target"], r["scenario"], r["conc"]) == (t, s, c)])
            res[(s, c)][t] = cell
    return res
