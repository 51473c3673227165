-- wrk script: POST /api/v1/reco/ingest with a fresh random unit vector per request.
-- A repeated vector costs Cassandra almost nothing to index, so every body is new.
-- Env: BENCH_IDS (file of videoids, one per line), BENCH_TOKEN, BENCH_DIM, BENCH_PATH.
local dim = tonumber(os.getenv("BENCH_DIM") or "1536")
local path = os.getenv("BENCH_PATH") or "/api/v1/reco/ingest"
local threads = {}

function setup(thread)
   thread:set("offset", #threads * 7919)
   table.insert(threads, thread)
end

function init(args)
   ids = {}
   for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
   statuses = {}
   counter = offset or 0
   math.randomseed(os.time() + counter)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
end

function request()
   counter = counter + 1
   local v, norm = {}, 0
   for k = 1, dim do
      local x = math.random() * 2 - 1
      v[k] = x
      norm = norm + x * x
   end
   norm = math.sqrt(norm)
   for k = 1, dim do v[k] = string.format("%.8g", v[k] / norm) end
   local body = '{"videoId":"' .. ids[(counter % #ids) + 1] .. '","vector":[' .. table.concat(v, ",") .. ']}'
   return wrk.format(nil, path, nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local codes = {}
   for _, t in ipairs(threads) do
      for code, n in pairs(t:get("statuses")) do codes[code] = (codes[code] or 0) + n end
   end
   local parts = {}
   for code, n in pairs(codes) do parts[#parts + 1] = string.format('"%d":%d', code, n) end
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_s":%.3f,"timeouts":%d,"connect_errors":%d,' ..
      '"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"statuses":{%s}}\n',
      summary.requests, summary.duration / 1e6, summary.errors.timeout, summary.errors.connect,
      latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
      latency.max / 1e3, table.concat(parts, ",")))
end
