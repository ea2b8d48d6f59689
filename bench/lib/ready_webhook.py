#!/usr/bin/env python3
"""Time to ready through the product's real path: a signed `pull_request` delivery into
`previewd serve` (release build, real Docker, real Caddy gateway) → the `success` commit status
received by a fake GitHub (bench/lib/fakegh.py), for fixtures/two-service held in a git
repository (`github.git_url = file://...`). Against the same steps by hand (docker CLI, one
after another), measured in the same run.

cold: a new PR on a new branch whose three services carry fresh nonces (no cache can hit).
warm: a second commit on that branch changing only `web`, delivered as `synchronize`; a client
polls the live URL every 10 ms during it (redeploy: failed requests must be 0)."""
import argparse, json, os, pathlib, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from common import (swap_summary, by_hand, cleanup_hand, cleanup_instance, copy_fixture, failure_summary, free_port,
                    images, instance, poller, sigterm_exits, stamp, stop_server, wait_port)
from fakegh import FakeGitHub, GitFixture, deliver, phases_of, pr_event
from payloads import sign

ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--fixture", required=True)
ap.add_argument("--payloads", required=True, help="fixtures/forge-payloads/github (the real PR fixture)")
ap.add_argument("--out", required=True)
ap.add_argument("--reps", type=int, default=1)
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
sigterm_exits()
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-webhook-"))
inst = instance("w")
SECRET = "bench-webhook-secret"
TIMEOUT = 300


def emit(**kw):
    with open(a.out, "a") as f:
        f.write(json.dumps(kw) + "\n")


fake = FakeGitHub()
git = GitFixture(work / "git", a.fixture)
port, admin, gw_port, hand_port = free_port(), free_port(), free_port(), free_port()
env = dict(os.environ, PREVIEWD_INSTANCE=inst, PREVIEWD_DATA_DIR=str(work / "data"),
           PREVIEWD_LISTEN=f"127.0.0.1:{port}", PREVIEWD_ADMIN_LISTEN=f"127.0.0.1:{admin}",
           PREVIEWD_GATEWAY_PORT=str(gw_port), PREVIEWD_GATEWAY_KEEP_RUNNING="true",
           PREVIEWD_GITHUB_WEBHOOK_SECRET=SECRET, PREVIEWD_GITHUB_TOKEN="bench-token",
           PREVIEWD_GITHUB_API_URL=fake.url, PREVIEWD_GITHUB_GIT_URL=git.url,
           PREVIEWD_TRIGGERS_LABELS="preview")
env.pop("PREVIEWD_CONFIG", None)
serve = None


def post(action, number, branch, sha):
    body = pr_event(fake, a.payloads, action, number, branch, sha)
    t0 = time.monotonic()
    code, _ = deliver(port, SECRET, "pull_request", body, sign)
    if code != 202:
        sys.exit(f"delivery {action} #{number} answered {code}, not 202 (queued); see {work}/serve.log")
    return t0


def to_success(number, branch, sha, action):
    """Delivery sent → `success` status received. Returns (seconds, phases, url, detail)."""
    t0 = post(action, number, branch, sha)
    try:
        ok = fake.wait(lambda: fake.status(sha, "success") or fake.status(sha, "failure")
                       or fake.status(sha, "error"), TIMEOUT, f"final status on {sha[:7]}")
    except TimeoutError as e:
        sys.exit(f"{e}; see {work}/serve.log")
    if ok["state"] != "success":
        sys.exit(f"PR #{number} at {sha[:7]}: status {ok['state']}: {ok.get('description')}; see {work}/serve.log")
    dt = ok["t"] - t0
    pending = fake.status(sha, "pending")
    # previewd's own split is in its sticky comment, edited just after the status.
    try:
        c = fake.wait(lambda: (lambda c: c if c and sha[:7] in c["body"] and "Time to ready" in c["body"] else None)(
            fake.comment(number)), 20, "ready comment")
        total, phases = phases_of(c["body"])
    except TimeoutError:
        total, phases = None, {}
    return dt, phases, ok.get("target_url"), dict(
        pending_after_s=(pending["t"] - t0) if pending else None, engine_total_s=total)


def closed(number, branch, sha):
    post("closed", number, branch, sha)
    try:
        fake.wait(lambda: any(d.get("state") == "inactive" for d in fake.deployment_statuses
                              if d["deployment"] in {x["id"] for x in fake.deployments
                                                     if x.get("environment") == f"preview/{branch}"}),
                  120, f"inactive deployment of {branch}")
    except TimeoutError as e:
        print(f"  warning: {e}", flush=True)


try:
    log = open(work / "serve.log", "wb")
    serve = subprocess.Popen([a.previewd, "serve"], env=env, stdout=log, stderr=log)
    wait_port(port, serve)
    # The first preview of a fresh instance also creates the gateway: reported on its own.
    git.branch("prime"); stamp(git.path, "web"); sha = git.commit("prime")
    first, fph, _, fd = to_success(1, "prime", sha, "labeled")
    emit(kind="wh_first_ever", previewd_s=first, phases=fph, **fd)
    print(f"  webhook: first preview on a fresh instance (gateway created): {first:.1f}s {fph}", flush=True)
    closed(1, "prime", sha)
    for rep in range(a.reps):
        number, branch = 10 + rep, f"cold{rep}"
        git.branch(branch)
        for s in ["web", "api", "internal"]:
            stamp(git.path, s)
        sha = git.commit(f"cold {rep}")
        pd, phases, url, d = to_success(number, branch, sha, "labeled")
        tag = f"{inst}-hand{rep}"
        hand_dir = copy_fixture(a.fixture, work / f"hand{rep}")
        hand = by_hand(hand_dir, tag, hand_port)
        emit(kind="wh_cold", rep=rep, previewd_s=pd, hand_s=hand, phases=phases, **d)
        print(f"  webhook cold  previewd {pd:6.2f}s  by hand {hand:6.2f}s  ratio {pd / hand:.2f}x  {phases}  {d}", flush=True)
        # warm: a second commit changing only web, delivered as `synchronize`, URL polled.
        nonce = stamp(git.path, "web")
        sha2 = git.commit(f"web only {rep}")
        before = images(inst)
        stop, plog = threading.Event(), []
        th = threading.Thread(target=poller, args=(url, stop, plog), daemon=True); th.start()
        time.sleep(0.3)
        t_up = time.monotonic()
        wd, wphases, url2, wdet = to_success(number, branch, sha2, "synchronize")
        time.sleep(0.3)
        stop.set(); th.join()
        after = images(inst)
        rebuilt = sorted(s for s in after if after.get(s) != before.get(s))
        fs = failure_summary(plog, t_up)
        sw = swap_summary(plog, nonce, t_up)
        stamp(hand_dir, "web")
        hw = by_hand(hand_dir, tag, hand_port, warm_only="web")
        emit(kind="wh_warm", rep=rep, previewd_s=wd, hand_s=hw, phases=wphases, cold_s=pd, rebuilt=rebuilt,
             same_url=url2 == url, **sw, **wdet, **fs)
        print(f"  webhook warm  previewd {wd:6.2f}s  by hand {hw:6.2f}s  ratio {wd / hw:.2f}x  warm/cold {wd / pd:.2f}"
              f"  rebuilt {rebuilt}  {wphases}", flush=True)
        print(f"  webhook redeploy: {fs['polled']} polls, {fs['failed']} failed {fs['kinds']}"
              + (f" between {fs['first_fail_s']}s and {fs['last_fail_s']}s after the delivery" if fs["failed"] else "")
              + f"; new commit served {sw['new_seen_after_s'] if sw['new_seen_after_s'] is not None else float('nan'):.2f}s after it", flush=True)
        closed(number, branch, sha2)
        cleanup_hand(tag)
    if fake.unknown:
        print(f"  fake GitHub: calls it does not know: {sorted(set(fake.unknown))}", flush=True)
    emit(kind="wh_calls", ops=sorted({r["op"] for r in fake.requests}), unknown=sorted(set(fake.unknown)))
finally:
    stop_server(serve)
    cleanup_instance(inst, a.previewd, env)
    for rep in range(a.reps):
        cleanup_hand(f"{inst}-hand{rep}")
    fake.close()
