-- wrk script of the HTTP benchmarks (bench/loadgen.py runs it): POST the bodies of a file (one JSON per line) in
-- turn, optionally paced to a target rate, and print one JSON line of figures at the end.
--
--   WRK_BODIES=file  WRK_PATH=/predict  [WRK_RATE=req/s]  [WRK_API_KEY=key]  wrk -t1 -c8 -d10s -s wrk_post.lua URL
--
-- WRK_RATE: requests are released on one schedule shared by the thread's connections (delay() is called before
-- each request; LuaJIT's ffi gives the monotonic clock), so the rate holds while connections are free. Latency is
-- wrk's own, from send to answer. One wrk thread (-t1): the schedule is per thread.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
  int clock_gettime(int clock_id, wrk_timespec *tp);
]]
local clock = ffi.new("wrk_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local path = os.getenv("WRK_PATH") or "/"
local headers = { ["Content-Type"] = "application/json" }
local key = os.getenv("WRK_API_KEY")
if key and #key > 0 then headers["x-api-key"] = key end
local requests = {}
local count = 0

-- built in init(), when wrk has set the thread's host: a request formatted earlier has no Host header, which
-- uvicorn (MLServer) refuses with 400 "Invalid HTTP request received" where gunicorn lets it pass
init = function(_)
  for i, body in ipairs(bodies) do requests[i] = wrk.format("POST", path, headers, body) end
end

request = function()
  count = count + 1
  return requests[(count % #requests) + 1]
end

local rate = tonumber(os.getenv("WRK_RATE") or "0") or 0
if rate > 0 then
  local interval = 1000 / rate
  local due = nil
  delay = function()
    local t = now_ms()
    if due == nil then due = t end
    due = due + interval
    if due < t - 1000 then due = t end -- far behind (the server stalled): do not burst to catch up
    local wait = due - t
    if wait < 0 then return 0 end
    return wait
  end
end

done = function(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
