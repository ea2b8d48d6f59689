#!/usr/bin/env python3
"""Webhook ingest: previewd serve (release, real engine) against adnanh/webhook, same payloads,
same wrk load, same run. Each (target, scenario, concurrency) gets a freshly started server so
VmHWM (peak RSS) belongs to that cell alone. With --reps N every cell is measured N times, the
two targets in turn (previewd, webhook, previewd, ...), so both see the same moments of a noisy
machine; the report takes the median. Writes JSON lines (one per repetition) to --out."""
import argparse, json, os, pathlib, resource, signal, socket, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import free_port  # noqa: E402

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
ap.add_argument("--threads", type=int, default=0,
                help="the load generator's threads (default: 1 at c=1, else 2)")
ap.add_argument("--scenarios", default="pr_ignored,pr_queued,push_1mib,bad_sig",
                help="comma-separated subset, for side-by-side runs of one payload")
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
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


def start_previewd(labels):
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
               PREVIEWD_TRIGGERS_LABELS=labels,
               PREVIEWD_GATEWAY_PORT=str(free_port()))
    env.pop("PREVIEWD_CONFIG", None)
    log = open(work / "previewd.log", "ab")
    p = subprocess.Popen([a.previewd, "serve"], env=env, stdout=log, stderr=log, cwd=work)
    wait_port(port, p)
    return p, port, "/webhooks/github"


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


def run(target, scenario, body, sig, event, conc, rep):
    if target == "previewd":
        p, port, path = start_previewd("bug" if scenario == "pr_queued" else "preview")
    else:
        p, port, path = start_webhook()
    time.sleep(0.5)
    idle = status(p.pid, "VmRSS")
    if sig == "bad":
        sigfile = work / "bad.sig"
        sigfile.write_text("sha256=" + "0" * 64)
    else:
        sigfile = pl / f"{sig}.sig"
    out = work / "wrk.json"
    threads = a.threads or (1 if conc == 1 else 2)
    url = f"http://127.0.0.1:{port}{path}"
    if a.client == "wrk":
        cmd = ["wrk", f"-t{threads}", f"-c{conc}", f"-d{a.duration}s", "--timeout", "10s",
               "-s", a.lua, url, "--", str(pl / f"{body}.json"), str(sigfile), event, path]
    else:
        cmd = [a.client, url, str(conc), str(threads), str(a.duration),
               str(pl / f"{body}.json"), str(sigfile), event]
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
             hwm=status(p.pid, "VmHWM"), rss_idle=idle, rss_end=status(p.pid, "VmRSS"))
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
    print(f"  {target:9} {scenario:10} c={conc:<4} {r['rps']:9.0f} req/s  p50 {r['p50_us']/1000:7.2f} ms"
          f"  p99 {r['p99_us']/1000:8.2f} ms  errors {r['errors']}  non-2xx {r['non2xx']}"
          f"  peak RSS {r['hwm']/2**20:6.1f} MiB  CPU/req {r['cpu_us_per_req']:7.1f} us"
          f" (wrk {r['wrk_cpu_us_per_req']:6.1f} us)", flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(r) + "\n")


# scenario -> (body, signature, event, targets)
scenarios = [
    ("pr_ignored", "pr_opened", "pr_opened", "pull_request", ["previewd", "webhook"]),
    ("pr_queued", "pr_labeled", "pr_labeled", "pull_request", ["previewd", "webhook"]),
    ("push_1mib", "push_1mib", "push_1mib", "push", ["previewd", "webhook"]),
    ("bad_sig", "pr_opened", "bad", "pull_request", ["previewd", "webhook"]),
]
for conc in [int(c) for c in a.conc.split(",")]:
    for name, body, sig, event, targets in scenarios:
        if name not in a.scenarios.split(","):
            continue
        for rep in range(a.reps):
            for t in [t for t in targets if t in a.targets.split(",")]:
                run(t, name, body, sig, event, conc, rep)
