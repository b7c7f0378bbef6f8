#!/usr/bin/env bash
# End-to-end tests of the example servers: `socketio` in a real (headless) Chromium with the
# browser client from assets/ (presence, and rooms on the demo page's documents), `websocket`
# with scripted clients, and rooms driven by scripted socket.io-client and WebSocket clients.
# Exits non-zero on any failure.
#
#   bash e2e/run.sh
#
# Installs what it needs: the npm packages in package-lock.json (playwright-core, which does not
# download a browser, and socket.io-client), Debian's chromium if /usr/bin/chromium is missing,
# and builds the two examples.
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
  socketio.test.mjs websocket.test.mjs client.test.mjs rooms.test.mjs rooms-clients.test.mjs

# The load test: 1,000 Socket.IO clients against the release build (a debug build of the
# transport cannot serve that many on two cores). Skip with PRESENCE_E2E_LOAD=0.
if [ "${PRESENCE_E2E_LOAD:-1}" != "0" ]; then
  echo "e2e: cargo build --release --example socketio (load test)"
  (cd "$root" && cargo build --release --all-features --example socketio)
  PRESENCE_EXAMPLES_DIR="$target_dir/release/examples" node load.mjs --clients 1000 \
    --json "$target_dir/load-test.json"
fi
