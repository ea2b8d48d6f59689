#!/usr/bin/env python3
"""Footprint with N live previews: `previewd up` N copies of fixtures/two-service (identical
content, so after the first every image is reused by its content hash), then `previewd serve`'s
RSS once its start-up reconcile has run, and `previewd gc` timed by hyperfine."""
import argparse, json, os, pathlib, shutil, socket, subprocess, sys, tempfile, time, uuid

ap = argparse.ArgumentParser()
ap.add_argument("--previewd", required=True)
ap.add_argument("--fixture", required=True)
ap.add_argument("--n", type=int, default=50)
ap.add_argument("--out", required=True)
a = ap.parse_args()
a.previewd = os.path.abspath(a.previewd)
work = pathlib.Path(tempfile.mkdtemp(prefix="previewd-bench-fifty-"))
inst = f"bench{uuid.uuid4().hex[:6]}"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


env = dict(os.environ, PREVIEWD_INSTANCE=inst, PREVIEWD_DATA_DIR=str(work / "data"),
           PREVIEWD_GATEWAY_PORT=str(free_port()), PREVIEWD_LIMITS_MAX_PREVIEWS=str(a.n + 5),
           PREVIEWD_GITHUB_WEBHOOK_SECRET="bench", PREVIEWD_GITHUB_TOKEN="bench-token",
           PREVIEWD_GITHUB_API_URL="http://127.0.0.1:9", PREVIEWD_GITHUB_GIT_URL="http://127.0.0.1:9")
env.pop("PREVIEWD_CONFIG", None)


def emit(**kw):
    with open(a.out, "a") as f:
        f.write(json.dumps(kw) + "\n")


try:
    t0 = time.monotonic()
    for i in range(a.n):
        d = work / f"app{i}"
        shutil.copytree(a.fixture, d)
        p = subprocess.run([a.previewd, "up", "--repo", str(d)], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"previewd up #{i} failed:\n{p.stderr[-2000:]}")
    print(f"  {a.n} previews up in {time.monotonic() - t0:.0f}s", flush=True)
    port, admin = free_port(), free_port()
    senv = dict(env, PREVIEWD_LISTEN=f"127.0.0.1:{port}", PREVIEWD_ADMIN_LISTEN=f"127.0.0.1:{admin}")
    log = open(work / "serve.log", "wb")
    s = subprocess.Popen([a.previewd, "serve"], env=senv, stdout=log, stderr=log)
    time.sleep(10)  # the start-up reconcile runs, then serve idles
    st = {l.split(":")[0]: int(l.split()[1]) for l in open(f"/proc/{s.pid}/status") if l.startswith("Vm")}
    s.terminate(); s.wait(20)
    hf = work / "gc.json"
    subprocess.run(["hyperfine", "-N", "--runs", "5", "--warmup", "1", "--export-json", str(hf),
                    f"{a.previewd} gc"], env=env, capture_output=True)
    g = json.loads(hf.read_text())["results"][0]
    emit(kind="fifty", n=a.n, rss=st["VmRSS"] * 1024, hwm=st["VmHWM"] * 1024,
         gc_mean_s=g["mean"], gc_min_s=g["min"], gc_max_s=g["max"])
    print(f"  serve with {a.n} previews: RSS {st['VmRSS']/1024:.1f} MiB (peak {st['VmHWM']/1024:.1f}); "
          f"previewd gc mean {g['mean']*1e3:.0f} ms (min {g['min']*1e3:.0f}, max {g['max']*1e3:.0f})", flush=True)
finally:
    subprocess.run([a.previewd, "down", "--all"], env=env, capture_output=True)
    subprocess.run(["docker", "rm", "-f", f"{inst}-gateway"], capture_output=True)
    imgs = subprocess.run(["docker", "images", "-q", "--filter", f"reference={inst}-*"],
                          capture_output=True, text=True).stdout.split()
    if imgs:
        subprocess.run(["docker", "rmi", "-f", *imgs], capture_output=True)
