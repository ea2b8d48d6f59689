-- wrk script: POSTs one signed webhook body with a fresh delivery id per request (so previewd's
-- de-duplication never short-cuts the work). Args: body-file headers-file path delivery-header:
-- the headers file holds the forge's other headers, one `Name: value` a line (ingest.py writes
-- it: GitHub's event and signature, Gitea's, GitLab's token or signature); delivery-header names
-- the header that carries the id (X-GitHub-Delivery, X-Gitea-Delivery, Idempotency-Key).
-- WRK_OUT names the file the summary goes to. The summary is written as JSON for bench/lib/ingest.py.
--
-- The request is formatted once, with a fixed-width delivery id, and each request() writes the
-- next id into that same string through LuaJIT's FFI before returning it. A new string per
-- request (wrk.format, or one concatenation) costs wrk an allocation of the whole request: for
-- the 1 MiB push LuaJIT maps and unmaps 1.2 MB per request, and half of wrk's CPU went to page
-- faults on the cores it shares with the server it measures (BENCHMARKS.md, "Profiling and
-- fixes"). wrk copies the returned bytes into its own buffer at once, so rewriting them for the
-- next request is safe. Ids are bench-<run nonce>-<thread>-<counter>: unique within and across
-- runs (LuaJIT's math.random repeats its sequence in every run).
local ffi = require("ffi")
local threads = {}
local counter = 0
local WIDTH = 37

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb")); local body = f:read("*a"); f:close()
  local headers = {}
  for line in io.lines(args[2]) do
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name] = value end
  end
  local HEADER = args[4] .. ": "
  local r = assert(io.open("/dev/urandom", "rb"))
  nonce = r:read(6):gsub(".", function(c) return string.format("%02x", c:byte()) end); r:close()
  local placeholder = string.rep("0", WIDTH)
  headers[args[4]] = placeholder
  -- Kept in a global: the string must outlive every request() that writes into it.
  req = wrk.format("POST", args[3], headers, body)
  local at = assert(req:find(HEADER .. placeholder .. "\r\n", 1, true), "delivery header not found")
  slot = ffi.cast("uint8_t *", req) + (at - 1 + #HEADER)
end

function request()
  counter = counter + 1
  local id = string.format("bench-%s-%03d-%014d", nonce, tid, counter)
  assert(#id == WIDTH, "delivery id width")
  ffi.copy(slot, id, WIDTH)
  return req
end

function done(summary, latency, requests)
  local f = io.open(os.getenv("WRK_OUT") or "/dev/stdout", "w")
  local e = summary.errors
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
  f:close()
end
