#!/usr/bin/env bash
# Loads the all-in-one shop and a raw net/http baseline in the same run, and
# prints a Markdown table: product reads per second (shop vs baseline),
# p50/p99 latency, and the shop's peak resident memory.
#
#   bench/run.sh            # 10 s per target, 32 connections
#   DURATION=30s CONC=64 bench/run.sh
#
# Everything runs on loopback; the shop gets a fresh temporary data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONC=${CONC:-32}
work=$(mktemp -d)
cleanup() {
  [ -n "${shop_pid:-}" ] && kill "$shop_pid" 2>/dev/null && wait "$shop_pid" 2>/dev/null || true
  [ -n "${base_pid:-}" ] && kill "$base_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/globomantics" ./cmd/globomantics
go build -o "$work/loadgen" ./bench/loadgen
go build -o "$work/baseline" ./bench/baseline

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
shop_port=$(free_port); base_port=$(free_port)

start=$(date +%s.%N)
GLOBO_LOG_LEVEL=warn "$work/globomantics" serve --http-addr "127.0.0.1:$shop_port" --data-dir "$work/data" 2>"$work/shop.log" &
shop_pid=$!
until curl -fs "http://127.0.0.1:$shop_port/readyz" >/dev/null; do
  sleep 0.05
  kill -0 "$shop_pid" || { cat "$work/shop.log"; exit 1; }
done
ready=$(echo "$(date +%s.%N) - $start" | bc)

# Product ids to read, and one product's JSON for the baseline to serve.
ids=$(curl -fs "http://127.0.0.1:$shop_port/api/v1/products?page_size=24" | python3 -c 'import json,sys;print(" ".join(p["id"] for p in json.load(sys.stdin)["items"]))')
first=${ids%% *}
curl -fs "http://127.0.0.1:$shop_port/api/v1/products/$first" >"$work/product.json"
"$work/baseline" -addr "127.0.0.1:$base_port" -body "$work/product.json" &
base_pid=$!
until curl -fs "http://127.0.0.1:$base_port/api/v1/products/x" >/dev/null; do sleep 0.05; done

shop_urls=$(for i in $ids; do printf 'http://127.0.0.1:%s/api/v1/products/%s,' "$shop_port" "$i"; done)
base_urls=$(for i in $ids; do printf 'http://127.0.0.1:%s/api/v1/products/%s,' "$base_port" "$i"; done)
base=$("$work/loadgen" -label baseline -c "$CONC" -d "$DURATION" -urls "${base_urls%,}")
shop=$("$work/loadgen" -label shop -c "$CONC" -d "$DURATION" -urls "${shop_urls%,}")
search=$("$work/loadgen" -label search -c "$CONC" -d "$DURATION" -urls "http://127.0.0.1:$shop_port/api/v1/search?q=lamp,http://127.0.0.1:$shop_port/api/v1/search?q=book")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$shop_pid/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$shop_pid/status")

python3 - "$base" "$shop" "$search" "$hwm" "$rss" "$ready" "$CONC" "$DURATION" <<'PY'
import json, sys, platform, os, datetime
base, shop, search = (json.loads(x) for x in sys.argv[1:4])
hwm, rss, ready = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} x {cpu}, {platform.system()} {platform.release()}; "
      f"{sys.argv[7]} connections, {sys.argv[8]} per target, load generator on the same machine.\n")
print("| target | req/s | ratio to baseline | p50 ms | p90 ms | p99 ms | errors |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in (base, shop, search):
    print(f"| {r['label']} | {r['rps']:.0f} | {r['rps']/base['rps']:.2f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
print(f"\nShop peak resident memory (VmHWM): {hwm/1024:.1f} MB; resident after the run: {rss/1024:.1f} MB; "
      f"ready on a fresh data directory in {ready:.2f} s.")
PY
