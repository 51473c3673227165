-- wrk script: POST /api/v1/reco/ingest with a fresh random unit vector per request.
-- A repeated vector costs Cassandra almost nothing to index, so every body is new:
-- BENCH_POOL distinct bodies are built in init(), before the timed run, so that
-- formatting 1536 floats (milliseconds of Lua) is not charged to the server.
-- Env: BENCH_IDS (file of videoids, one per line), BENCH_TOKEN, BENCH_DIM, BENCH_PATH,
-- BENCH_POOL (bodies to build; past it, bodies repeat and "reused" counts them),
-- BENCH_DELAY_MS (optional pause before each request on a connection: bench/soak.py
-- paces its load with it).
local dim = tonumber(os.getenv("BENCH_DIM") or "1536")
local path = os.getenv("BENCH_PATH") or "/api/v1/reco/ingest"
local threads = {}

if os.getenv("BENCH_DELAY_MS") then
   local pause = tonumber(os.getenv("BENCH_DELAY_MS"))
   function delay()
      return pause
   end
end

function setup(thread)
   thread:set("offset", #threads * 7919)
   table.insert(threads, thread)
end

function init(args)
   ids = {}
   for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
   statuses = {}
   counter = offset or 0
   reused = 0
   math.randomseed(os.time() + counter)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
   pool = {}
   for i = 1, tonumber(os.getenv("BENCH_POOL") or "2000") do
      pool[i] = wrk.format(nil, path, nil, body(ids[((counter + i) % #ids) + 1]))
   end
   next_body = 0
end

function body(id)
   local v, norm = {}, 0
   for k = 1, dim do
      local x = math.random() * 2 - 1
      v[k] = x
      norm = norm + x * x
   end
   norm = math.sqrt(norm)
   for k = 1, dim do v[k] = string.format("%.8g", v[k] / norm) end
   return '{"videoId":"' .. id .. '","vector":[' .. table.concat(v, ",") .. ']}'
end

function request()
   next_body = next_body + 1
   if next_body > #pool then
      next_body = 1
   end
   if requests_sent and requests_sent >= #pool then
      reused = reused + 1
   end
   requests_sent = (requests_sent or 0) + 1
   return pool[next_body]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local codes, reused_total = {}, 0
   for _, t in ipairs(threads) do
      for code, n in pairs(t:get("statuses")) do codes[code] = (codes[code] or 0) + n end
      reused_total = reused_total + (t:get("reused") or 0)
   end
   local parts = {}
   for code, n in pairs(codes) do parts[#parts + 1] = string.format('"%d":%d', code, n) end
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_s":%.3f,"timeouts":%d,"connect_errors":%d,' ..
      '"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"reused":%d,"statuses":{%s}}\n',
      summary.requests, summary.duration / 1e6, summary.errors.timeout, summary.errors.connect,
      latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
      latency.max / 1e3, reused_total, table.concat(parts, ",")))
end
