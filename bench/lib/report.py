#!/usr/bin/env python3
"""Turns one run's JSON lines into the markdown tables of BENCHMARKS.md, ratios included."""
import json, pathlib, sys

out = pathlib.Path(sys.argv[1])


def lines(name):
    p = out / name
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []


print("```")
print((out / "machine.txt").read_text().rstrip())
print("```\n")

ing = lines("ingest.jsonl")
if ing:
    print("### 1. Webhook ingest (wrk, fixed time per cell, loopback)\n")
    print("| payload | c | previewd req/s | webhook req/s | ratio | previewd p50 / p99 ms | webhook p50 / p99 ms | errors p / w | non-2xx p / w | peak RSS p / w MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = {(r["target"], r["scenario"], r["conc"]): r for r in ing}
    for (t, s, c), r in sorted(cells.items(), key=lambda k: (k[0][1], k[0][2])):
        if t != "previewd":
            continue
        w = cells.get(("webhook", s, c))
        if not w:
            continue
        ratio = r["rps"] / w["rps"] if w["rps"] else float("inf")
        print(f"| {s} | {c} | {r['rps']:.0f} | {w['rps']:.0f} | **{ratio:.1f}×** | "
              f"{r['p50_us']/1e3:.2f} / {r['p99_us']/1e3:.2f} | {w['p50_us']/1e3:.2f} / {w['p99_us']/1e3:.2f} | "
              f"{r['errors']} / {w['errors']} | {r['non2xx']} / {w['non2xx']} | "
              f"{r['hwm']/2**20:.1f} / {w['hwm']/2**20:.1f} |")
    idle = [r["rss_idle"] for r in ing if r["target"] == "previewd"]
    if idle:
        print(f"\npreviewd serve RSS idle (0.5 s after start, before load): {min(idle)/2**20:.1f}–{max(idle)/2**20:.1f} MiB")
    print()

route = lines("route.jsonl")
if route:
    print("### 2. Route update (new preview's route answering, N previews already routed)\n")
    print("| N | previewd POST /load p50 / p99 ms | Caddyfile + caddy reload p50 / p99 ms | ratio p50 / p99 | previewd own work p50 ms |")
    print("|---|---|---|---|---|")
    cells = {(r["way"], r["n"]): r for r in route}
    for n in sorted({r["n"] for r in route}):
        l, rl = cells.get(("load", n)), cells.get(("reload", n))
        if l and rl:
            print(f"| {n} | {l['p50_ms']:.1f} / {l['p99_ms']:.1f} | {rl['p50_ms']:.1f} / {rl['p99_ms']:.1f} | "
                  f"**{rl['p50_ms']/l['p50_ms']:.1f}× / {rl['p99_ms']/l['p99_ms']:.1f}×** | {l['own_p50_ms']:.2f} |")
    ns = sorted({r["n"] for r in route})
    if len(ns) > 1:
        for way in ["load", "reload"]:
            a, b = cells.get((way, ns[0])), cells.get((way, ns[-1]))
            if a and b:
                print(f"\ngrowth N={ns[0]}→{ns[-1]} ({way}): p50 ×{b['p50_ms']/a['p50_ms']:.1f}, p99 ×{b['p99_ms']/a['p99_ms']:.1f}")
    print()

ready = lines("ready.jsonl")
if ready:
    print("### 3. Time to ready, fixtures/two-service (and 5. redeploy)\n")
    print("| run | previewd s | by hand s | ratio | previewd phases |")
    print("|---|---|---|---|---|")
    for r in [r for r in ready if r["kind"] != "gc"]:
        ph = ", ".join(f"{k} {v:.1f}" for k, v in r.get("phases", {}).items())
        if r["kind"] == "first_ever":
            print(f"| first preview (creates the gateway) | {r['previewd_s']:.2f} | – | – | {ph} |")
        else:
            print(f"| {r['kind']} #{r['rep']} | {r['previewd_s']:.2f} | {r['hand_s']:.2f} | "
                  f"**{r['previewd_s']/r['hand_s']:.2f}×** | {ph}{'; rebuilt ' + ','.join(r['rebuilt']) if r.get('rebuilt') is not None else ''} |")
    warm = [r for r in ready if r["kind"] == "warm"]
    for r in ready:
        if r["kind"] == "gc":
            print(f"\n`previewd gc` (start-up reconcile) with {r['previews']} preview: mean {r['mean_s']*1e3:.0f} ms (min {r['min_s']*1e3:.0f}, max {r['max_s']*1e3:.0f})")
    for r in warm:
        ns = r["new_seen_after_s"]
        print(f"\nredeploy #{r['rep']}: {r['polled']} requests polled during the warm update, **{r['failed']} failed**; "
              f"new commit served {ns:.2f} s after `up` started; warm/cold {r['previewd_s']/r['cold_s']:.2f}"
              + (f"; failures (s after `up` started, status or error): {r['failures'][:12]}" if r.get('failures') else "") if ns is not None else
              f"\nredeploy #{r['rep']}: {r['polled']} polled, {r['failed']} failed; new commit never seen")
    print()

fifty = lines("fifty.jsonl")
if fifty:
    print("### 4. Footprint with N live previews\n")
    for r in fifty:
        print(f"- `previewd serve` with {r['n']} live previews, 10 s after start (start-up reconcile done): "
              f"RSS **{r['rss']/2**20:.1f} MiB** (peak {r['hwm']/2**20:.1f} MiB)")
        print(f"- `previewd gc` with {r['n']} previews (hyperfine, 5 runs): mean **{r['gc_mean_s']*1e3:.0f} ms** "
              f"(min {r['gc_min_s']*1e3:.0f}, max {r['gc_max_s']*1e3:.0f})")
    print()
