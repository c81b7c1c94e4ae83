-- wrk script for the ingest scenario: POST an Alertmanager v4 webhook with
-- three firing alerts to the URL's path (/alertmanager/<receiver>).
--
-- Every request is a new notification: the fingerprints carry the wrk run
-- (BENCH_RUN, distinct for every wrk process of a bench run, so a measured
-- run never repeats its warm-up's bodies), the wrk thread id and a
-- per-thread counter, so alertbridge's HA de-duplication (same
-- group, same alerts within delivery.dedup_window) never turns a request into
-- a cheap "already stored" answer. Groups rotate over 100 alertnames, as a
-- busy Alertmanager's notifications would. The baseline gets the same bodies.
--
-- Targets: BENCH_TARGETS="host:port host:port ..." points wrk's threads at
-- them in turn (thread i at target i mod n), a client-side round robin over
-- replicas; one target gets every thread. wrk's connections stay with their
-- thread, so -t3 -c15 over three replicas gives each 5 connections.
--
-- done() prints one JSON line prefixed "BENCH_JSON " that bench/ingest.py
-- parses: requests, duration, errors, and latency percentiles in microseconds.

local threads = {}
local counter = 0
local run = tonumber(os.getenv("BENCH_RUN") or "0") % 256
-- `tid` is a global on purpose: setup() sets it in each thread's Lua state
-- (thread:set), which a `local tid` here would shadow (every thread then
-- sent thread 0's bodies, and two of three requests were HA duplicates).

local targets = {}
for target in string.gmatch(os.getenv("BENCH_TARGETS") or "", "%S+") do
  local host, port = string.match(target, "^(.+):(%d+)$")
  table.insert(targets, wrk.lookup(host, port)[1])
end

function setup(thread)
  if #targets > 0 then
    thread.addr = targets[(#threads % #targets) + 1]
  end
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local alert_fmt = '{"status":"firing","labels":{"alertname":"Bench%03d","instance":"web-%d:9100",'
  .. '"job":"node","severity":"critical"},"annotations":{"summary":"web-%d CPU 使用率 97%%",'
  .. '"description":"web-%d:9100 的 CPU 使用率已连续 10 分钟超过 90%%。"},'
  .. '"startsAt":"2026-11-29T02:05:30.000Z","endsAt":"0001-01-01T00:00:00Z",'
  .. '"generatorURL":"http://prometheus.example.com:9090/graph?g0.expr=node_cpu_usage%%3E0.9",'
  .. '"fingerprint":"%02x%02x%010x%02x"}'

local body_fmt = '{"version":"4","groupKey":"{}:{alertname=\\"Bench%03d\\"}","truncatedAlerts":0,'
  .. '"status":"firing","receiver":"bench","groupLabels":{"alertname":"Bench%03d"},'
  .. '"commonLabels":{"alertname":"Bench%03d","job":"node","severity":"critical"},'
  .. '"commonAnnotations":{"runbook_url":"https://runbooks.example.com/HighCPUUsage"},'
  .. '"externalURL":"http://alertmanager.example.com:9093","alerts":[%s,%s,%s]}'

function request()
  counter = counter + 1
  local g = counter % 100
  local a = {}
  for i = 1, 3 do
    a[i] = string.format(alert_fmt, g, i, i, i, run, tid, counter, i)
  end
  local body = string.format(body_fmt, g, g, g, a[1], a[2], a[3])
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
