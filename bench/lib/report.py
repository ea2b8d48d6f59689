#!/usr/bin/env python3
"""Turns one run's JSON lines into the markdown tables of BENCHMARKS.md, ratios included."""
import json, pathlib, sys

from common import ingest_cells, versus_cells

out = pathlib.Path(sys.argv[1])


def lines(name):
    p = out / name
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []


print("```")
print((out / "machine.txt").read_text().rstrip())
wc = out / "wallclock.txt"
if wc.exists():
    print("wall-clock (s, build excluded): " + ", ".join(l.replace(" ", " ") for l in wc.read_text().splitlines()))
print("```\n")

def ingest_table(ing, title, client):
    """One table of ingest cells; `client` names the load generator whose own CPU is reported."""
    cells = ingest_cells(ing)
    reps = max(c["reps"] for c in cells.values())
    print(f"### {title}\n")
    if reps > 1:
        print(f"Each cell: {reps} repetitions, previewd's and webhook's in turn; figures are the medians, "
              "with the lowest and highest req/s and p99 in brackets. Errors and non-2xx are summed, "
              "peak RSS is the highest.\n")
    cpu = all("cpu_us_per_req" in c for c in cells.values())
    if cpu:
        print("CPU per request: the server's CPU time over the load (webhook's includes the command it "
              f"runs per request) and {client}'s own, divided by the requests served; unlike req/s it does "
              f"not depend on how the server and {client} share the 2 cores.\n")
    print("| payload | c | previewd req/s | webhook req/s | ratio | previewd p50 / p99 ms | webhook p50 / p99 ms | errors p / w | non-2xx p / w | peak RSS p / w MiB |"
          + (f" server CPU per request p / w µs | {client} CPU per request, p's / w's cell µs |" if cpu else ""))
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if cpu else ""))

    def spread(c, lo, hi, scale, fmt):
        return f" ({fmt.format(c[lo] / scale)}–{fmt.format(c[hi] / scale)})" if c["reps"] > 1 else ""
    for (t, s, c), r in sorted(cells.items(), key=lambda k: (k[0][1], k[0][2])):
        if t != "previewd":
            continue
        w = cells.get(("webhook", s, c))
        if not w:
            continue
        # A cell where webhook finished only a handful of requests has no meaningful ratio.
        ratio = (f"**{r['rps'] / w['rps']:.1f}×**" if w["requests"] >= 20 else
                 f"– (webhook: {w['requests']} requests)")
        print(f"| {s} | {c} | {r['rps']:.0f}{spread(r, 'rps_min', 'rps_max', 1, '{:.0f}')} | "
              f"{w['rps']:.0f}{spread(w, 'rps_min', 'rps_max', 1, '{:.0f}')} | {ratio} | "
              f"{r['p50_us']/1e3:.2f} / {r['p99_us']/1e3:.2f}{spread(r, 'p99_min_us', 'p99_max_us', 1e3, '{:.2f}')} | "
              f"{w['p50_us']/1e3:.2f} / {w['p99_us']/1e3:.2f}{spread(w, 'p99_min_us', 'p99_max_us', 1e3, '{:.2f}')} | "
              f"{r['errors']} / {w['errors']} | {r['non2xx']} / {w['non2xx']} | "
              f"{r['hwm']/2**20:.1f} / {w['hwm']/2**20:.1f} |"
              + (f" {r['cpu_us_per_req']:.0f} / {w['cpu_us_per_req']:.0f} ({w['cpu_us_per_req'] / r['cpu_us_per_req']:.1f}×) |"
                 f" {r['wrk_cpu_us_per_req']:.0f} / {w['wrk_cpu_us_per_req']:.0f} |" if cpu else ""))
    idle = [r["rss_idle"] for r in ing if r["target"] == "previewd"]
    if idle:
        print(f"\npreviewd serve RSS idle (0.5 s after start, before load): {min(idle)/2**20:.1f}–{max(idle)/2**20:.1f} MiB")
    print()


ing = lines("ingest.jsonl")
if ing:
    ingest_table(ing, "1. Webhook ingest (wrk, fixed time per cell, loopback)", "`wrk`")
ing_load = lines("ingest_load.jsonl")
if ing_load:
    ingest_table(ing_load, "1b. Webhook ingest, zero-copy client (bench/route/src/load.rs, c=32 only)",
                 "the client")


NAMES = {"previewd": "GitHub", "previewd-gitea": "Gitea", "previewd-gitlab": "GitLab (token)",
         "previewd-gitlab-signed": "GitLab (signed)", "previewd-before": "before"}


def versus_table(rows, base, others, title, names=NAMES, ratio_of="req/s"):
    """Targets measured in turn in one run, each against `base`: req/s with the ratio to base's
    (the median of the repetitions, their spread in brackets), p50 / p99, CPU per request, and
    what previewd's /metrics counted the deliveries as."""
    cells = versus_cells(rows, base, others)
    others = [t for t in others if any(t in v for v in cells.values())]
    if not cells or not others:
        return
    reps = max(c["reps"] for v in cells.values() for c in v.values())
    print(f"### {title}\n")
    print(f"Each cell: {reps} repetition(s) of every target in turn ({', '.join(names.get(t, t) for t in [base] + others)}, "
          "one serve started per repetition); req/s and p99 are medians with the lowest and highest in brackets; "
          f"the ratio is each target's median req/s over {names.get(base, base)}'s. CPU per request is the "
          "server's over the load, divided by the requests served.\n")
    cols = [base] + others
    print("| payload | bytes | c | " + " | ".join(f"{names.get(t, t)} req/s" + ("" if t == base else f" (× {names.get(base, base)})") for t in cols)
          + " | p50 / p99 ms, " + " / ".join(names.get(t, t) for t in cols)
          + " | CPU per request µs, " + " / ".join(names.get(t, t) for t in cols) + " | errors, non-2xx | what the deliveries became |")
    print("|---|---|---|" + "---|" * len(cols) + "---|---|---|---|")
    spread = lambda c: f" ({c['rps_min']:.0f}–{c['rps_max']:.0f})" if c["reps"] > 1 else ""
    for (s_, c_), v in sorted(cells.items()):
        b = v.get(base)
        row = [s_, str(v[next(iter(v))].get("bytes", "–")), str(c_)]
        for t in cols:
            x = v.get(t)
            if x is None:
                row.append("–")
            elif t == base or b is None:
                row.append(f"{x['rps']:.0f}{spread(x)}")
            else:
                row.append(f"{x['rps']:.0f}{spread(x)} **{x['rps'] / b['rps']:.2f}×**")
        row.append(" · ".join(f"{x['p50_us']/1e3:.2f} / {x['p99_us']/1e3:.2f}" if x else "–" for x in map(v.get, cols)))
        row.append(" / ".join(f"{x['cpu_us_per_req']:.0f}" if x and "cpu_us_per_req" in x else "–" for x in map(v.get, cols)))
        row.append(" · ".join(f"{x['errors']}, {x['non2xx']}" if x else "–" for x in map(v.get, cols)))
        outs = []
        for t in cols:
            x = v.get(t)
            if x is None or "outcomes" not in x:
                continue
            o = ", ".join(f"{k} {n}" for k, n in sorted(x["outcomes"].items()))
            outs.append(f"{names.get(t, t)}: {o}" + (f" (**{'; '.join(x['outcome_problems'])}**)" if x["outcome_problems"] else ""))
        row.append("; ".join(outs) or "–")
        print("| " + " | ".join(row) + " |")
    print()


forges = lines("ingest_forges.jsonl")
if forges:
    versus_table(forges, "previewd", ["previewd-gitea", "previewd-gitlab", "previewd-gitlab-signed"],
                 "1c. Webhook ingest per forge (issue 18): Gitea and GitLab beside GitHub, same payload sizes (wrk)")
before = lines("ingest_before.jsonl")
if before:
    versus_table(before, "previewd-before", ["previewd"],
                 "1d. Webhook ingest, before and after (another binary as `previewd-before`, wrk)",
                 names=dict(NAMES, previewd="after"))

route = lines("route.jsonl")
if route:
    print("### 2. Route update (new preview's route answering, N previews already routed)\n")
    print("| N | previewd route table (no reload) p50 / p99 ms | Caddyfile + caddy reload p50 / p99 ms | ratio p50 / p99 | previewd own work p50 ms | a request through the routes, previewd / Caddyfile, p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    cells = {(r["way"], r["n"]): r for r in route}
    req = lambda r: (f"{r['request_p50_ms']:.2f} / {r['request_p99_ms']:.2f}" if "request_p50_ms" in r else "n/a")
    for n in sorted({r["n"] for r in route}):
        l, rl = cells.get(("table", n)), cells.get(("reload", n))
        if l and rl:
            print(f"| {n} | {l['p50_ms']:.1f} / {l['p99_ms']:.1f} | {rl['p50_ms']:.1f} / {rl['p99_ms']:.1f} | "
                  f"**{rl['p50_ms']/l['p50_ms']:.1f}× / {rl['p99_ms']/l['p99_ms']:.1f}×** | {l['own_p50_ms']:.2f} | "
                  f"{req(l)} vs {req(rl)} |")
    for r in sorted((r for r in route if r["way"] == "sync"), key=lambda r: r["n"]):
        print(f"\nreal route sync on Docker (bench/route/src/sync.rs), N={r['n']}, {r['reps']} reps: "
              f"new host answering through the gateway container p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms, "
              f"of which `Gateway::sync` (label listing of {2 * r['n'] + 2} containers, lock, network join, table) "
              f"p50 {r['sync_p50_ms']:.1f} / p99 {r['sync_p99_ms']:.1f} ms "
              f"(seeding {r['seed_s']:.0f} s, first sync joining {r['n']} networks {r['first_sync_s']:.1f} s)")
    ns = sorted({r["n"] for r in route if r["way"] != "sync"})
    if len(ns) > 1:
        for way in ["table", "reload"]:
            a, b = cells.get((way, ns[0])), cells.get((way, ns[-1]))
            if a and b:
                print(f"\ngrowth N={ns[0]}→{ns[-1]} ({way}): p50 ×{b['p50_ms']/a['p50_ms']:.1f}, p99 ×{b['p99_ms']/a['p99_ms']:.1f}")
    print()



def phases_str(r):
    return ", ".join(f"{k} {v:.1f}" for k, v in (r.get("phases") or {}).items())


def redeploy_line(label, r):
    ns = r.get("new_seen_after_s")
    kinds = ", ".join(f"{k} ×{v}" for k, v in (r.get("kinds") or {}).items())
    line = (f"- {label}: {r['polled']} requests polled during the update, **{r['failed']} failed**"
            + (f" ({kinds}; between {r['first_fail_s']:.2f} and {r['last_fail_s']:.2f} s after the update started)"
               if r["failed"] and r.get("first_fail_s") is not None else "")
            + (f"; new commit served {ns:.2f} s after the update started" if ns is not None else "; new commit never seen")
            + (f"; switch seen by the client: {r['swap_gap_ms']:.0f} ms from the last old answer to the first new one, "
               f"{r['old_after_new']} old answers after it" if r.get("swap_gap_ms") is not None else "")
            + (f"; previewd's route phase {r['phases']['route']:.1f} s" if "route" in (r.get("phases") or {}) else ""))
    return line


ready = lines("ready.jsonl")
wh = lines("ready_webhook.jsonl")
if ready or wh:
    print("### 3. Time to ready, fixtures/two-service (and 5. redeploy)\n")
if wh:
    print("**Through the webhook** (signed delivery into `previewd serve` → `success` commit status "
          "received by the fake GitHub), against the same steps by hand in the same run:\n")
    print("| run | previewd s | by hand s | ratio | pending status after s | engine's own total s | previewd phases |")
    print("|---|---|---|---|---|---|---|")
    for r in wh:
        if r["kind"] == "wh_calls":
            continue
        pend = f"{r['pending_after_s']:.2f}" if r.get("pending_after_s") is not None else "–"
        tot = f"{r['engine_total_s']:.1f}" if r.get("engine_total_s") is not None else "–"
        if r["kind"] == "wh_first_ever":
            print(f"| first preview (creates the gateway) | {r['previewd_s']:.2f} | – | – | {pend} | {tot} | {phases_str(r)} |")
        else:
            extra = f"; rebuilt {','.join(r['rebuilt']) or 'nothing'}; warm/cold {r['previewd_s']/r['cold_s']:.2f}" if r["kind"] == "wh_warm" else ""
            print(f"| {r['kind'][3:]} #{r['rep']} | {r['previewd_s']:.2f} | {r['hand_s']:.2f} | "
                  f"**{r['previewd_s']/r['hand_s']:.2f}×** | {pend} | {tot} | {phases_str(r)}{extra} |")
    print()
    for r in wh:
        if r["kind"] == "wh_warm":
            print(redeploy_line(f"redeploy (webhook `synchronize`) #{r['rep']}", r))
        if r["kind"] == "wh_calls" and r.get("unknown"):
            print(f"- fake GitHub: calls it does not know: {r['unknown']}")
    print()
if ready:
    print("**Through the CLI** (`previewd up`), against the same steps by hand in the same run:\n")
    print("| run | previewd s | by hand s | ratio | previewd phases |")
    print("|---|---|---|---|---|")
    for r in [r for r in ready if r["kind"] != "gc"]:
        if r["kind"] == "first_ever":
            print(f"| first preview (creates the gateway) | {r['previewd_s']:.2f} | – | – | {phases_str(r)} |")
        else:
            extra = f"; rebuilt {','.join(r['rebuilt']) or 'nothing'}; warm/cold {r['previewd_s']/r['cold_s']:.2f}" if r["kind"] == "warm" else ""
            print(f"| {r['kind']} #{r['rep']} | {r['previewd_s']:.2f} | {r['hand_s']:.2f} | "
                  f"**{r['previewd_s']/r['hand_s']:.2f}×** | {phases_str(r)}{extra} |")
    print()
    for r in ready:
        if r["kind"] == "warm":
            print(redeploy_line(f"redeploy (`previewd up`) #{r['rep']}", r))
    for r in ready:
        if r["kind"] == "gc":
            print(f"- `previewd gc` with {r['previews']} preview: mean {r['mean_s']*1e3:.0f} ms (min {r['min_s']*1e3:.0f}, max {r['max_s']*1e3:.0f})")
    print()

fifty = lines("fifty.jsonl")
if fifty:
    print("### 4. Footprint and start-up reconcile with N live previews\n")
    for r in fifty:
        ms = lambda v: f"{v*1e3:.0f} ms" if v is not None else "–"
        print(f"- N = **{r['n']}** live previews (asked for {r['requested']}), deployed through `serve` by {r['n']} "
              f"signed deliveries in {r['deploy_s'] + r['first_s']:.0f} s; networks: {r['networks_in_pool']} from "
              f"`network.subnet_pool` {r['pool'] or '(not honoured)'}, {r['networks_outside']} from Docker's pools")
        print(f"- `previewd serve` idle (2 s after start, nothing deployed): RSS **{r['rss_idle']/2**20:.1f} MiB**")
        print(f"- `previewd serve` with {r['n']} live previews it deployed itself (5 s after the last): "
              f"RSS **{r['rss']/2**20:.1f} MiB** (peak while deploying {r['hwm']/2**20:.1f} MiB)")
        rs = r.get("reconcile_s")
        print(f"- restart with {r['n']} previews: start-up reconcile pass done **{rs:.2f} s** after the process started"
              if rs is not None else f"- restart with {r['n']} previews: start-up reconcile line not seen")
        if rs is not None:
            print(f"  (webhooks served after {r['serving_after_s']:.2f} s; {r['prs_read']} PRs read back from GitHub); "
                  f"RSS after it **{r['rss_after_restart']/2**20:.1f} MiB** (peak {r['hwm_after_restart']/2**20:.1f} MiB)")
        print(f"- `previewd gc` with {r['n']} previews (hyperfine, 5 runs): mean **{ms(r['gc_mean_s'])}** "
              f"(min {ms(r['gc_min_s'])}, max {ms(r['gc_max_s'])}); `docker ps` listing the same containers "
              f"with their labels: {ms(r['ps_mean_s'])} (ratio {r['gc_mean_s']/r['ps_mean_s']:.1f}×)"
              if r.get("gc_mean_s") and r.get("ps_mean_s") else "- `previewd gc`: no figure")
        print(f"- the gateway (Caddy) with {r['n']} previews routed: {r['gateway_mem']}")
        wh_idle = [x["rss_idle"] for x in ing if x["target"] == "webhook"] if ing else []
        if wh_idle:
            print(f"- for comparison, adnanh/webhook idle in the same run: {min(wh_idle)/2**20:.1f} MiB")
        for note in r.get("notes") or []:
            print(f"- note: {note}")
        if r.get("failed"):
            print(f"- failed deploys: {r['failed']}")
    print()
