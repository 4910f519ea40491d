-- wrk script of B2 (benchmarks/b2_receiver.py): replays pre-generated, signed, distinct callbacks.
--
-- Arguments (wrk ... -- FILE THREADS [THINK_MS]): the requests file holds three lines per request: the path
-- with its query string, the headers as "Name: value" joined by tabs, and the form-encoded body. Thread t of
-- THREADS sends requests t, t+THREADS, t+2*THREADS, ... each once (distinct calls and nonces); a thread
-- that runs out repeats its last request and counts it in "exhausted". With THINK_MS > 0, each connection
-- waits a random time (exponential, mean THINK_MS milliseconds) after an answer before its next request:
-- callbacks then arrive spread out, at about connections / THINK_MS per millisecond, as independent calls
-- hang up, instead of as fast as the server answers. done() prints one line:
-- B2JSON {"sent": ..., "ok": ..., "duplicate": ..., "other": ..., "exhausted": ...}
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local requests = {}
local position = 0
sent, ok, duplicate, other, exhausted = 0, 0, 0, 0, 0

function init(args)
  local path, stride, think = args[1], tonumber(args[2]), tonumber(args[3] or "0")
  if think > 0 then
    math.randomseed(os.time() + id)
    -- wrk checks for a global delay() after init(): defined only when asked for.
    delay = function()
      return math.floor(-math.log(1 - math.random()) * think + 0.5)
    end
  end
  local lines = {}
  for line in io.lines(path) do
    lines[#lines + 1] = line
  end
  local index = 0
  for first = 1, #lines - 2, 3 do
    if index % stride == id then
      local headers = {}
      for name, value in string.gmatch(lines[first + 1], "([^:\t]+): ([^\t]*)") do
        headers[name] = value
      end
      requests[#requests + 1] = wrk.format("POST", lines[first], headers, lines[first + 2])
    end
    index = index + 1
  end
end

function request()
  if position < #requests then
    position = position + 1
    sent = sent + 1
  else
    exhausted = exhausted + 1
  end
  return requests[position]
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    if string.find(body, "duplicate", 1, true) then
      duplicate = duplicate + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local totals = {sent = 0, ok = 0, duplicate = 0, other = 0, exhausted = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
  end
  io.write(string.format(
    'B2JSON {"sent": %d, "ok": %d, "duplicate": %d, "other": %d, "exhausted": %d, ' ..
    '"p50": %f, "p99": %f, "seconds": %f, "errors": %d}\n',
    totals.sent, totals.ok, totals.duplicate, totals.other, totals.exhausted,
    latency:percentile(50) / 1e6, latency:percentile(99) / 1e6, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  ))
end
