#!/usr/bin/env bash
# End-to-end tests of the example servers: `socketio` in a real (headless) Chromium with the
# browser client from assets/ (presence, and rooms on the demo page's documents), `websocket`
# with scripted clients, rooms driven by scripted socket.io-client and WebSocket clients, and
# two `socketio` nodes of one cluster on a redis-server started here (Chromium tabs on both,
# a rolling restart, a node killed, scripted clients across both, refused sessions). Exits
# non-zero on any failure.
#
#   bash e2e/run.sh
#
# Installs what it needs: the npm packages in package-lock.json (playwright-core, which does not
# download a browser, and socket.io-client), Debian's chromium if /usr/bin/chromium is missing,
# Debian's redis-server if it is missing, and builds the two examples.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

echo "e2e: npm ci"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "e2e: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "e2e: installing Debian's redis-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
fi

# The cluster tests' Redis: a free port on 127.0.0.1, no persistence, stopped by pid at exit.
redis_port="$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = "PONG" ]; then break; fi
  sleep 0.1
done
export PRESENCE_E2E_REDIS="redis://127.0.0.1:$redis_port"
echo "e2e: redis-server on port $redis_port (pid $redis_pid)"

# --all-features: the examples need none, but CI's `cargo test --workspace --all-features` has built them so.
echo "e2e: cargo build --all-features --example socketio --example websocket"
(cd "$root" && cargo build --all-features --example socketio --example websocket)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
  | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).target_directory)')"
export PRESENCE_EXAMPLES_DIR="$target_dir/debug/examples"

# Node 22 has a global WebSocket; Node 20 has it behind a flag.
ws_flag=()
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)'; then
  ws_flag=(--experimental-websocket)
fi

cd "$here"
node "${ws_flag[@]}" --no-warnings=ExperimentalWarning --test --test-concurrency=1 \
  socketio.test.mjs websocket.test.mjs client.test.mjs rooms.test.mjs rooms-clients.test.mjs \
  cluster.test.mjs interest.test.mjs admission.test.mjs http.test.mjs

# The load test: 1,000 Socket.IO clients against the release build (a debug build of the
# transport cannot serve that many on two cores). Skip with PRESENCE_E2E_LOAD=0.
if [ "${PRESENCE_E2E_LOAD:-1}" != "0" ]; then
  echo "e2e: cargo build --release --example socketio (load test)"
  (cd "$root" && cargo build --release --all-features --example socketio)
  PRESENCE_EXAMPLES_DIR="$target_dir/release/examples" node load.mjs --clients 1000 \
    --json "$target_dir/load-test.json"
fi
