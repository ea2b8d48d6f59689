#!/usr/bin/env python3
"""Webhook ingest: previewd serve (release, real engine) against adnanh/webhook, same payloads,
same wrk load, same run. Each (target, scenario, concurrency) gets a freshly started server so
VmHWM (peak RSS) belongs to that cell alone. With --reps N every cell is measured N times, the
targets in turn (previewd, webhook, previewd, ...), so all see the same moments of a noisy
machine; the report takes the median. Writes JSON lines (one per repetition) to --out.

Targets (--targets, in the order given):
  previewd                GitHub's route, /webhooks/github
  previewd-gitea          the same serve's Gitea route, Gitea's headers and payloads (issue 18)
  previewd-gitlab         its GitLab route with X-Gitlab-Token (GitLab's default)
  previewd-gitlab-signed  its GitLab route with a Standard Webhooks signature (a signing token)
  previewd-before         GitHub's route on another binary (--previewd-before), for a
                          before/after of a change side by side in one run
  webhook                 adnanh/webhook, the tool a user would otherwise pick
Every previewd serve has the three forges configured, so the routes differ only in their own
code. GitHub points at an absent host (127.0.0.1:9, refused at once: never the Internet), as
it always has here. Gitea and GitLab point at `FakeForge`, a loopback server that answers the
token user's `GET /user` (which `serve` reads at start and would otherwise retry for ~7 s per
forge before serving) and 503 to everything else, so a queued intent's permission read is
retried in the background as GitHub's refused one is, and nothing previewd does during the
load waits on a forge. After each previewd cell its /metrics says what the deliveries became (`outcomes`:
ignored, queued, unauthorized, ...), so a cell that measured another path than its scenario's
is seen (verdict.py checks it)."""
import argparse, base64, hashlib, http.server, json, os, pathlib, re, resource, signal, socket, subprocess, sys, tempfile, \
    threading, time, urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import free_port  # noqa: E402
from payloads import sign_standard  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--payloads", required=True)
ap.add_argument("--secret", required=True)
ap.add_argument("--duration", type=int, default=10, help="seconds per repetition of a cell")
ap.add_argument("--reps", type=int, default=1)
ap.add_argument("--conc", default="1,32,128")
ap.add_argument("--out", required=True)
ap.add_argument("--lua", required=True)
ap.add_argument("--client", default="wrk",
                help="wrk (its Lua script) or the path of previewd-bench-load, the zero-copy client")
ap.add_argument("--targets", default="previewd,webhook")
ap.add_argument("--previewd-before", default=None,
                help="a second previewd binary, measured as the target previewd-before")
ap.add_argument("--threads", type=int, default=0,
                help="the load generator's threads (default: 1 at c=1, else 2)")
ap.add_argument("--scenarios", default="pr_ignored,pr_queued,push_1mib,bad_sig",
                help="comma-separated subset, for side-by-side runs of one payload")
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
if a.previewd_before:
    a.previewd_before = os.path.abspath(a.previewd_before)
elif "previewd-before" in a.targets.split(","):
    raise SystemExit("the target previewd-before needs --previewd-before PATH")
# GitLab's secret is a Standard Webhooks signing token (whsec_<base64>): the same string is
# the X-Gitlab-Token of the token target, and keys the signature of the signed one.
GITLAB_SECRET = "whsec_" + base64.b64encode(hashlib.sha256(a.secret.encode()).digest()).decode()
pl = pathlib.Path(a.payloads)
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-ingest-"))




def wait_port(port, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early (rc {proc.returncode}); see {work}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on {port} did not come up")


def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid):
    """CPU seconds of pid, its reaped children included (webhook runs a command per request)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


class FakeForge(http.server.BaseHTTPRequestHandler):
    """Gitea's `GET /api/v1/user` and GitLab's `GET /api/v4/user` (previewd's token user, read
    once at start); 503 to anything else, which previewd retries later as a forge outage."""

    def answer(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/") in ("/api/v1/user", "/api/v4/user"):
            return self.answer(200, {"id": 1, "login": "previewd-bench", "username": "previewd-bench",
                                     "name": "previewd bench", "state": "active"})
        self.answer(503, {"message": "bench: this fake forge answers GET /user only"})

    do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self.answer(
        503, {"message": "bench: this fake forge answers GET /user only"})

    def log_message(self, *args):
        pass


fake_forge = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeForge)
threading.Thread(target=fake_forge.serve_forever, daemon=True).start()
FAKE_URL = f"http://127.0.0.1:{fake_forge.server_address[1]}"


def start_previewd(labels, binary):
    port, admin = free_port(), free_port()
    inst = f"bench{os.getpid() % 100000}"
    env = dict(os.environ,
               PREVIEWD_INSTANCE=inst,
               PREVIEWD_LISTEN=f"127.0.0.1:{port}",
               PREVIEWD_ADMIN_LISTEN=f"127.0.0.1:{admin}",
               PREVIEWD_DATA_DIR=str(work / "data"),
               PREVIEWD_GITHUB_WEBHOOK_SECRET=a.secret,
               PREVIEWD_GITHUB_TOKEN="bench-token",
               # An absent GitHub and git host: refused at once, never the Internet.
               PREVIEWD_GITHUB_API_URL="http://127.0.0.1:9",
               PREVIEWD_GITHUB_GIT_URL="http://127.0.0.1:9",
               PREVIEWD_GITEA_URL=FAKE_URL,
               PREVIEWD_GITEA_TOKEN="bench-token",
               PREVIEWD_GITEA_WEBHOOK_SECRET=a.secret,
               PREVIEWD_GITLAB_URL=FAKE_URL,
               PREVIEWD_GITLAB_TOKEN="bench-token",
               PREVIEWD_GITLAB_WEBHOOK_SECRET=GITLAB_SECRET,
               PREVIEWD_TRIGGERS_LABELS=labels,
               PREVIEWD_GATEWAY_PORT=str(free_port()))
    env.pop("PREVIEWD_CONFIG", None)
    log = open(work / "previewd.log", "ab")
    p = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log, cwd=work)
    wait_port(port, p)
    return p, port, admin


def start_webhook():
    port = free_port()
    hooks = work / "hooks.json"
    hooks.write_text(json.dumps([{
        "id": "github",
        "execute-command": "/bin/true",
        "response-message": "ok",
        "trigger-rule-mismatch-http-response-code": 401,
        "trigger-rule": {"match": {
            "type": "payload-hmac-sha256", "secret": a.secret,
            "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
    }]))
    log = open(work / "webhook.log", "ab")
    p = subprocess.Popen(["webhook", "-hooks", str(hooks), "-ip", "127.0.0.1", "-port", str(port)],
                         stdout=log, stderr=log, cwd=work)
    wait_port(port, p)
    return p, port, "/hooks/github"


# What each forge's deliveries look like: route, the header carrying the delivery id, the
# payloads' folder, and per scenario (body, event headers); the signature headers come from
# `auth`. Gitea's X-Gitea-Event is the family, X-Gitea-Event-Type the precise kind.
FORGES = {
    "github": dict(path="/webhooks/github", delivery="X-GitHub-Delivery", dir="", label="bug",
                   agent="GitHub-Hookshot/bench", bodies={
                       "pr_ignored": ("pr_opened", {"X-GitHub-Event": "pull_request"}),
                       "pr_queued": ("pr_labeled", {"X-GitHub-Event": "pull_request"}),
                       "push_1mib": ("push_1mib", {"X-GitHub-Event": "push"}),
                       "bad_sig": ("pr_opened", {"X-GitHub-Event": "pull_request"})}),
    "gitea": dict(path="/webhooks/gitea", delivery="X-Gitea-Delivery", dir="gitea", label="Kind/Documentation",
                  agent="Go-http-client/1.1", bodies={
                      "pr_ignored": ("pr_opened", {"X-Gitea-Event": "pull_request", "X-Gitea-Event-Type": "pull_request"}),
                      "pr_queued": ("pr_sync", {"X-Gitea-Event": "pull_request",
                                                "X-Gitea-Event-Type": "pull_request_sync"}),
                      "push_1mib": ("push_1mib", {"X-Gitea-Event": "push", "X-Gitea-Event-Type": "push"}),
                      "bad_sig": ("pr_opened", {"X-Gitea-Event": "pull_request", "X-Gitea-Event-Type": "pull_request"})}),
    "gitlab": dict(path="/webhooks/gitlab", delivery="Idempotency-Key", dir="gitlab", label="Platform",
                   agent="GitLab/17.6.0", bodies={
                       "pr_ignored": ("pr_opened", {"X-Gitlab-Event": "Merge Request Hook"}),
                       "pr_queued": ("pr_labeled", {"X-Gitlab-Event": "Merge Request Hook"}),
                       "push_1mib": ("push_1mib", {"X-Gitlab-Event": "Push Hook"}),
                       "bad_sig": ("pr_opened", {"X-Gitlab-Event": "Merge Request Hook"})}),
}
FORGE_OF = {"previewd": "github", "previewd-before": "github", "previewd-gitea": "gitea",
            "previewd-gitlab": "gitlab", "previewd-gitlab-signed": "gitlab", "webhook": "github"}


def auth(target, body_path, bad):
    """The headers that vouch for the body, as the target's forge sends them; wrong ones for
    bad_sig (a digest of the right shape that matches nothing, or a token that is not the secret)."""
    forge = FORGE_OF[target]
    if forge == "github":
        sig = "sha256=" + "0" * 64 if bad else (pl / f"{body_path.stem}.sig").read_text().strip()
        return {"X-Hub-Signature-256": sig}
    if forge == "gitea":
        return {"X-Gitea-Signature": "0" * 64 if bad else (body_path.with_suffix(".sig")).read_text().strip()}
    if target == "previewd-gitlab":
        return {"X-Gitlab-Token": "bench-wrong-token" if bad else GITLAB_SECRET,
                "X-Gitlab-Instance": "https://gitlab.example.com"}
    # Signed now, for this cell: the signature holds for five minutes either side.
    ts = str(int(time.time()))
    sig = "v1," + base64.b64encode(bytes(32)).decode() if bad else sign_standard(
        GITLAB_SECRET, "msg_bench", ts, body_path.read_bytes())
    return {"webhook-id": "msg_bench", "webhook-timestamp": ts, "webhook-signature": sig,
            "X-Gitlab-Instance": "https://gitlab.example.com"}


def outcomes(admin):
    """previewd's count of deliveries by outcome, from its /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=20).read().decode()
    except OSError as e:
        return {"metrics error": str(e)}
    res = {}
    for m in re.finditer(r'^previewd_webhooks_total\{([^}]*)\} (\d+)', text, re.M):
        outcome = re.search(r'outcome="([^"]*)"', m.group(1))
        if outcome:
            res[outcome.group(1)] = res.get(outcome.group(1), 0) + int(m.group(2))
    return res


def run(target, scenario, conc, rep):
    forge = FORGES[FORGE_OF[target]]
    body_name, event_headers = forge["bodies"][scenario]
    body_path = pl / forge["dir"] / f"{body_name}.json"
    admin = None
    if target == "webhook":
        p, port, path = start_webhook()
    else:
        binary = a.previewd_before if target == "previewd-before" else a.previewd
        p, port, admin = start_previewd(forge["label"] if scenario == "pr_queued" else "preview", binary)
        path = forge["path"]
    time.sleep(0.5)
    idle = status(p.pid, "VmRSS")
    bad = scenario == "bad_sig"
    headers = {"Content-Type": "application/json", "User-Agent": forge["agent"], **event_headers,
               **auth(target, body_path, bad)}
    hfile = work / "headers.txt"
    hfile.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
    out = work / "wrk.json"
    threads = a.threads or (1 if conc == 1 else 2)
    url = f"http://127.0.0.1:{port}{path}"
    if a.client == "wrk":
        cmd = ["wrk", f"-t{threads}", f"-c{conc}", f"-d{a.duration}s", "--timeout", "10s",
               "-s", a.lua, url, "--", str(body_path), str(hfile), path, forge["delivery"]]
    else:
        if FORGE_OF[target] != "github":
            raise SystemExit("the zero-copy client speaks GitHub's headers only: use wrk for other forges")
        sigfile = work / "client.sig"
        sigfile.write_text(headers["X-Hub-Signature-256"])
        cmd = [a.client, url, str(conc), str(threads), str(a.duration),
               str(body_path), str(sigfile), event_headers["X-GitHub-Event"]]
    # CPU of the server and of the load generator over the load alone: a figure per request
    # that does not depend on how the two share the cores (`wrk_cpu_us_per_req` holds the
    # generator's, whichever it is: the key stays comparable with older result files).
    cpu0, wrk0 = cpu_s(p.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as sink:
        # wrk's script writes WRK_OUT itself; previewd-bench-load prints the same summary.
        subprocess.run(cmd, env=dict(os.environ, WRK_OUT=str(out)), check=True,
                       stdout=subprocess.DEVNULL if a.client == "wrk" else sink)
    cpu1, wrk1 = cpu_s(p.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = json.loads(out.read_text())
    n = max(r["requests"], 1)
    r.update(cpu_us_per_req=(cpu1 - cpu0) / n * 1e6,
             wrk_cpu_us_per_req=((wrk1.ru_utime - wrk0.ru_utime) + (wrk1.ru_stime - wrk0.ru_stime)) / n * 1e6)
    r.update(target=target, scenario=scenario, conc=conc, rep=rep,
             client="wrk" if a.client == "wrk" else "load",
             rps=r["requests"] / (r["duration_us"] / 1e6),
             errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
             non2xx=r["status"],
             hwm=status(p.pid, "VmHWM"), rss_idle=idle, rss_end=status(p.pid, "VmRSS"),
             bytes=body_path.stat().st_size)
    if admin:
        r["outcomes"] = outcomes(admin)
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
    print(f"  {target:22} {scenario:10} c={conc:<4} {r['rps']:9.0f} req/s  p50 {r['p50_us']/1000:7.2f} ms"
          f"  p99 {r['p99_us']/1000:8.2f} ms  errors {r['errors']}  non-2xx {r['non2xx']}"
          f"  peak RSS {r['hwm']/2**20:6.1f} MiB  CPU/req {r['cpu_us_per_req']:7.1f} us"
          f" (wrk {r['wrk_cpu_us_per_req']:6.1f} us)" + (f"  {r['outcomes']}" if admin else ""), flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(r) + "\n")


targets = a.targets.split(",")
for t in targets:
    if t not in FORGE_OF:
        raise SystemExit(f"unknown target {t}: one of {', '.join(FORGE_OF)}")
for conc in [int(c) for c in a.conc.split(",")]:
    for name in ["pr_ignored", "pr_queued", "push_1mib", "bad_sig"]:
        if name not in a.scenarios.split(","):
            continue
        for rep in range(a.reps):
            # Each repetition starts with the next target, so none is always measured first
            # (in the first forge run, 2026-12-07, GitHub, always first, had the lowest req/s of
            # the four in 6 of 12 cells at a CPU per request within 10 % of the others').
            k = rep % len(targets)
            for t in targets[k:] + targets[:k]:
                run(t, name, conc, rep)
