// A bounded loopback load test of the Socket.IO example server (issue: backpressure and storms):
//
//   node e2e/load.mjs [--clients 1000] [--json out.json] [--tick-ms N (the server ticks every N ms)]
//
// 1. `clients` Socket.IO clients (socket.io-client over WebSocket), one user and one tab each,
//    heartbeating every 500 ms, plus one watcher that only observes.
// 2. Mass departure: half of them vanish at once (their TCP connections destroyed, no close
//    frame). Every one must go offline for the watcher, within the server's lost-connection
//    bound; no healthy client may be disconnected by the server; every client must end up
//    holding what the server holds (it got every update or a fresh state, never a silent gap).
// 3. Restart: the server is stopped and started again on the same port; every remaining client
//    reconnects by itself. Every client must then hold exactly the survivors (no ghost of the
//    departed, no flap of those who came back), under the new epoch.
//
// It reports, per phase: detection latency against the thresholds, messages per client, and the
// server's resident memory and CPU time (from /proc). Exits non-zero when a check fails. Talks to
// 127.0.0.1 only, and stops by itself (every wait is bounded).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const CLIENTS = Number(args.clients ?? 1000);
const HEARTBEAT_MS = 500;
const THRESHOLDS = {
  'active-ms': 2000,
  'idle-ms': 4000,
  'away-ms': 6000,
  'ttl-ms': 10000,
  'disconnect-grace-ms': 3000,
  'leave-grace-ms': 1000,
  'ping-interval-ms': 1000,
  'ping-timeout-ms': 1000,
};
// A vanished client is noticed by the transport's ping (interval + timeout), then expires after
// the disconnect grace; the driver ticks at the deadline.
const LOST_BOUND_MS = THRESHOLDS['ping-interval-ms'] + THRESHOLDS['ping-timeout-ms']
  + THRESHOLDS['disconnect-grace-ms'] + 1000;

const examplesDir = process.env.PRESENCE_EXAMPLES_DIR
  ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(here, '..', 'target'), 'debug', 'examples');

const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startServer(port, snapshot) {
  const bin = path.join(examplesDir, 'socketio');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build --example socketio\``);
  const argv = ['--port', String(port), '--snapshot', snapshot, '--dev'];
  for (const [flag, value] of Object.entries(THRESHOLDS)) argv.push('--' + flag, String(value));
  if (args['tick-ms']) argv.push('--tick-ms', args['tick-ms']);
  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${output}`)), 15000);
    const poll = setInterval(() => {
      if (/listening on/.test(output)) { clearTimeout(timer); clearInterval(poll); resolve(); }
    }, 20);
    child.on('exit', (code) => { clearTimeout(timer); clearInterval(poll); reject(new Error(`server exited (${code}): ${output}`)); });
  });
  return {
    child,
    ready,
    output: () => output,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.on('exit', r)), sleep(5000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/// The server's resident memory (bytes) and CPU time (ms) so far, from /proc.
function usage(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime, in clock ticks
    return { rss, cpuMs: ticks * 10 };
  } catch (_) {
    return { rss: 0, cpuMs: 0 };
  }
}

async function login(base, user) {
  const res = await fetch(`${base}/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  if (!res.ok) throw new Error(`login ${user}: ${res.status}`);
  return (await res.json()).token;
}

/// A client that keeps the protocol's state: the users it shows, by the resync rule.
function client(base, { token, session, watch }) {
  const c = {
    users: new Map(), epoch: null, version: null, resyncing: false,
    messages: 0, states: 0, resyncs: 0, serverDisconnects: 0, connected: false, socket: null, timer: null,
    offlineAt: new Map(), // user -> when this client first saw it offline
    epochs: new Map(), // epoch -> the users of its first state
  };
  const hello = { protocol: 1, activity: 'active' };
  if (!watch) { hello.session = session; hello.token = token; }
  const socket = io(base, { transports: ['websocket'], auth: hello, reconnectionDelay: 200, reconnectionDelayMax: 1000 });
  c.socket = socket;
  socket.on('connect', () => {
    c.connected = true;
    if (!watch) socket.emit('heartbeat', { activity: 'active' });
  });
  socket.on('disconnect', (reason) => {
    c.connected = false;
    c.resyncing = true;
    if (reason === 'io server disconnect') c.serverDisconnects += 1;
  });
  socket.on('presence', (m) => {
    c.messages += 1;
    if (m.type === 'state') {
      c.states += 1;
      c.users = new Map(m.users.map((u) => [u.user, u]));
      if (!c.epochs.has(m.epoch)) c.epochs.set(m.epoch, new Set(c.users.keys()));
      c.epoch = m.epoch; c.version = m.version; c.resyncing = false;
    } else if (m.type === 'updates') {
      if (c.resyncing) return;
      if (m.epoch !== c.epoch || m.from !== c.version + 1) { c.resyncing = true; c.resyncs += 1; socket.emit('resync'); return; }
      c.version = m.to;
      for (const u of m.users) {
        const held = c.users.get(u.user);
        if (held && u.seq <= held.seq) continue;
        if (u.presence === 'offline') {
          c.users.delete(u.user);
          if (!c.offlineAt.has(u.user)) c.offlineAt.set(u.user, Date.now());
        } else c.users.set(u.user, u);
      }
    }
  });
  if (!watch) {
    c.timer = setInterval(() => { if (socket.connected) socket.volatile.emit('heartbeat', { activity: 'active' }); }, HEARTBEAT_MS);
  }
  c.vanish = () => {
    clearInterval(c.timer);
    socket.io.reconnection(false);
    // Destroy the TCP connection: no close frame, no Socket.IO disconnect packet.
    const ws = socket.io.engine && socket.io.engine.transport && socket.io.engine.transport.ws;
    const raw = ws && (ws._socket || (ws._ws && ws._ws._socket));
    if (raw) raw.destroy(); else socket.io.engine.close();
  };
  c.close = () => { clearInterval(c.timer); socket.io.reconnection(false); socket.disconnect(); };
  return c;
}

async function until(what, predicate, timeoutMs) {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (predicate()) return Date.now() - start;
    await sleep(50);
  }
  check(false, `${what} (within ${timeoutMs} ms)`);
  return null;
}

function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function sameUsers(c, expected) {
  if (c.users.size !== expected.size) return false;
  for (const u of expected) if (!c.users.has(u)) return false;
  return true;
}

async function main() {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // The server saves a snapshot when it stops and restores it when it starts: a restart then
  // shows watchers nothing.
  const snapshot = path.join(fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'presence-load-')), 'snapshot.json');
  let server = startServer(port, snapshot);
  await server.ready;
  const report = {
    clients: CLIENTS, thresholds: THRESHOLDS, lost_bound_ms: LOST_BOUND_MS, phases: {},
    when: new Date().toISOString(), ticking: args['tick-ms'] ? `every ${args['tick-ms']} ms` : 'at the deadlines', build: path.basename(path.dirname(examplesDir)), cpus: (await import('node:os')).cpus().length,
  };
  const all = [];
  try {
    const before = usage(server.child.pid);
    const tokens = [];
    for (let i = 0; i < CLIENTS; i += 50) {
      const batch = [];
      for (let j = i; j < Math.min(CLIENTS, i + 50); j++) batch.push(login(base, `user-${j}`));
      tokens.push(...(await Promise.all(batch)));
    }
    const watcher = client(base, { watch: true });
    for (let i = 0; i < CLIENTS; i++) all.push(client(base, { token: tokens[i], session: `tab-${i}` }));
    const everyone = new Set(all.map((_, i) => `user-${i}`));
    const connectMs = await until('every client shows every user', () => watcher.users.size === CLIENTS && all.every((c) => c.users.size === CLIENTS), 60000);
    const steady = usage(server.child.pid);
    report.phases.connect = {
      ms: connectMs, rss_bytes: steady.rss, rss_before_bytes: before.rss, cpu_ms: steady.cpuMs - before.cpuMs,
      messages_per_client: percentile(all.map((c) => c.messages), 50), messages_per_client_max: Math.max(...all.map((c) => c.messages)),
    };
    check(connectMs !== null, `${CLIENTS} clients connected, each shows ${CLIENTS} users`);

    // 2. Mass departure.
    for (const c of all) { c.messages = 0; c.states = 0; }
    watcher.offlineAt.clear();
    const departed = all.slice(0, CLIENTS / 2);
    const healthy = all.slice(CLIENTS / 2);
    const survivors = new Set(healthy.map((_, i) => `user-${i + CLIENTS / 2}`));
    const t0 = Date.now();
    for (const c of departed) c.vanish();
    const departMs = await until('the watcher shows only the survivors', () => sameUsers(watcher, survivors), LOST_BOUND_MS + 10000);
    await until('every healthy client shows only the survivors', () => healthy.every((c) => sameUsers(c, survivors)), 10000);
    const latencies = [...watcher.offlineAt.entries()].filter(([u]) => !survivors.has(u)).map(([, at]) => at - t0);
    const after = usage(server.child.pid);
    report.phases.departure = {
      departed: departed.length,
      seen_offline_by_update: latencies.length,
      latency_ms: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), max: latencies.length ? Math.max(...latencies) : null },
      healthy_disconnected_by_server: healthy.reduce((n, c) => n + c.serverDisconnects, 0),
      healthy_disconnected: healthy.filter((c) => !c.connected).length,
      messages_per_client: percentile(healthy.map((c) => c.messages), 50),
      messages_per_client_max: Math.max(...healthy.map((c) => c.messages)),
      states_per_client: percentile(healthy.map((c) => c.states), 50),
      rss_bytes: after.rss, cpu_ms: after.cpuMs - steady.cpuMs, ms: departMs,
    };
    check(departMs !== null && departMs <= LOST_BOUND_MS + 2000, `the ${departed.length} departed went offline within the bound (${departMs} ms, bound ${LOST_BOUND_MS} ms + tick)`);
    check(healthy.every((c) => c.connected) && report.phases.departure.healthy_disconnected_by_server === 0, 'no healthy client was disconnected');
    check(healthy.every((c) => sameUsers(c, survivors)), 'every healthy client holds exactly the survivors');

    // 3. Restart: every surviving client reconnects by itself to the new server.
    for (const c of healthy) { c.messages = 0; c.states = 0; }
    const epochBefore = watcher.epoch;
    await server.stop();
    const tDown = Date.now();
    server = startServer(port, snapshot);
    await server.ready;
    const restartMs = await until('after the restart every client holds exactly the survivors',
      () => healthy.every((c) => c.connected && c.epoch !== epochBefore && sameUsers(c, survivors)) && watcher.epoch !== epochBefore && sameUsers(watcher, survivors),
      30000);
    const restarted = usage(server.child.pid);
    report.phases.restart = {
      ms_from_stop: restartMs === null ? null : Date.now() - tDown,
      messages_per_client: percentile(healthy.map((c) => c.messages), 50),
      messages_per_client_max: Math.max(...healthy.map((c) => c.messages)),
      states_per_client: percentile(healthy.map((c) => c.states), 50),
      rss_bytes: restarted.rss, cpu_ms: restarted.cpuMs,
    };
    check(restartMs !== null, 'no ghost and no missing user after the restart (new epoch)');
    const firstAfter = watcher.epochs.get(watcher.epoch) ?? new Set();
    report.phases.restart.first_state_users = firstAfter.size;
    check(firstAfter.size === survivors.size && [...survivors].every((u) => firstAfter.has(u)),
      `the first state after the restart already shows the ${survivors.size} survivors (restored from the snapshot: no flap)`);
    watcher.close();
  } finally {
    for (const c of all) c.close();
    await server.stop();
  }
  console.log(JSON.stringify(report, null, 2));
  if (args.json) fs.writeFileSync(args.json, JSON.stringify(report, null, 2) + '\n');
  if (failures.length) {
    console.log(`${failures.length} failed`);
    process.exit(1);
  }
  console.log('load test passed');
}

main().catch((e) => { console.error(e); process.exit(1); });
