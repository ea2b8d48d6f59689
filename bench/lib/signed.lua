-- wrk script: POSTs one signed GitHub webhook body with a fresh X-GitHub-Delivery per request
-- (so previewd's de-duplication never short-cuts the work). Args: body-file sig-file event path;
-- WRK_OUT names the file the summary goes to. The summary is written as JSON for bench/lib/ingest.sh.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb")); body = f:read("*a"); f:close()
  local s = assert(io.open(args[2], "rb")); sig = s:read("*a"):gsub("%s+$", ""); s:close()
  event, path = args[3], args[4]
  hdrs = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = event,
    ["X-Hub-Signature-256"] = sig,
    ["User-Agent"] = "GitHub-Hookshot/bench",
  }
end

function request()
  counter = counter + 1
  hdrs["X-GitHub-Delivery"] = string.format("bench-%d-%d-%d", tid, counter, math.random(1, 1e9))
  return wrk.format("POST", path, hdrs, body)
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
