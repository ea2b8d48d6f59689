#!/usr/bin/env python3
"""Time to ready for fixtures/two-service, and a redeploy under a steady client.

previewd: `previewd up --repo COPY` (real Docker, real Caddy gateway). By hand: the same steps
one after another with the docker CLI (build the three images, create the network, start the
containers, poll the URL until 200). Both work on copies of the fixture whose files carry a
fresh nonce, so no build-cache layer of an earlier run can be hit ("cold"); the busybox base
image is local for both. "warm": one service (web) changed, the others unchanged (cache hits).
During previewd's warm update a client polls the live URL every 10 ms: failed requests must be 0.
"""
import argparse, json, os, pathlib, re, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from common import (swap_summary, by_hand as _by_hand, cleanup_hand, cleanup_instance, copy_fixture as _copy, failure_summary,
                    get, images as _images, instance, poller, previewd_up, sigterm_exits, stamp)

ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--fixture", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--reps", type=int, default=1)
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
sigterm_exits()
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-ready-"))
# "bench<hex>": the name sorts before Docker's "bridge", which is what made the gateway's
# published port move during a redeploy (see BENCHMARKS.md); kept as the reproducer.
inst = instance("")
gw_port = 18000 + os.getpid() % 1000
env = dict(os.environ, PREVIEWD_INSTANCE=inst, PREVIEWD_DATA_DIR=str(work / "data"),
           PREVIEWD_GATEWAY_PORT=str(gw_port), PREVIEWD_GATEWAY_KEEP_RUNNING="true")
env.pop("PREVIEWD_CONFIG", None)
results = []


def emit(**kw):
    results.append(kw)
    with open(a.out, "a") as f:
        f.write(json.dumps(kw) + "\n")


def copy_fixture(name):
    return _copy(a.fixture, work / name)


def images():
    return _images(inst)


def by_hand(repo, tag, warm_only=None):
    return _by_hand(repo, tag, gw_port + 500, warm_only)


def up(repo):
    """Time to ready (`up`'s `ready in` line), its phases (with `exit`: when `up` exited, after
    the old generation went) and the preview's URL."""
    ready, phases, exited, stdout = previewd_up(a.previewd, repo, env)
    phases["exit"] = round(exited, 2)
    return ready, phases, re.search(r"(http://\S+)", stdout).group(1)


try:
    # A first preview creates the gateway container; reported on its own, not as "cold".
    first, fphases, _ = up(copy_fixture("prime"))
    emit(kind="first_ever", previewd_s=first, phases=fphases)
    subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
    print(f"  first preview on a fresh instance (gateway created): {first:.1f}s {fphases}", flush=True)
    for rep in range(a.reps):
        repo = copy_fixture(f"cold{rep}")
        pd, phases, url = up(repo)
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
        th = threading.Thread(target=poller, args=(url, stop, log), daemon=True); th.start()
        time.sleep(0.3)
        t_up = time.monotonic()
        wd, wphases, _ = up(repo)
        time.sleep(0.3)
        stop.set(); th.join()
        after = images()
        rebuilt = sorted(s for s in after if after.get(s) != before.get(s))
        fs = failure_summary(log, t_up)
        sw = swap_summary(log, nonce, t_up)
        hand_dir = work / f"hand{rep}"
        stamp(hand_dir, "web")
        hw = by_hand(hand_dir, tag, warm_only="web")
        emit(kind="warm", rep=rep, previewd_s=wd, hand_s=hw, phases=wphases, cold_s=pd, rebuilt=rebuilt,
             **sw, **fs)
        print(f"  warm  previewd {wd:6.2f}s  by hand {hw:6.2f}s  ratio {wd / hw:.2f}x  warm/cold {wd / pd:.2f}  rebuilt {rebuilt}  {wphases}", flush=True)
        print(f"  redeploy: {fs['polled']} polls, {fs['failed']} failed {fs['kinds']}"
              + (f" between {fs['first_fail_s']}s and {fs['last_fail_s']}s after `up` started" if fs["failed"] else "")
              + f"; new commit served {sw['new_seen_after_s'] if sw['new_seen_after_s'] is not None else float('nan'):.2f}s after `up` started", flush=True)
        subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
        cleanup_hand(tag)
finally:
    cleanup_instance(inst, a.previewd, env)
    for rep in range(a.reps):
        cleanup_hand(f"{inst}-hand{rep}")
