// The peer of the load generator (benches/load.rs): the seed's minimal presence pattern in
// Node.js, speaking the same JSON as our WebSocket server, so the same clients measure both.
//
//   node benches/load/seed-peer.mjs --port 3000 [--active-ms 10000 --idle-ms 12000 --away-ms 14000 --ttl-ms 16000]
//
// - `POST /api/login {"user":"ada"}` answers `{"user":"ada","token":"ada"}`: the token is the
//   user's name (no signature: a peer for load, not for use).
// - `/ws` (the `ws` package): the first message is a hello `{"type":"hello","token":..}`; the
//   user is its token. `users` in the hello is ignored: the peer has no interest feature, every
//   client is sent every user (that is what the load generator compares against).
// - Presence is derived from a map of last-seen times per user, by age (active, idle, away,
//   stale, offline after the TTL), in a sweep every second and at each hello or heartbeat. A
//   closed connection changes nothing: its user ages out.
// - Every change goes to every client as `{"type":"updates","epoch","from","to","users":[..]}`
//   (a sweep's changes in one message); a client is sent `{"type":"state",..}` at its hello and
//   when it asks (`{"type":"resync"}`). The epoch is the start time: new at every start.
//
// Other flags (ours take more) are ignored. Prints `listening on http://127.0.0.1:PORT` as ours.

import http from 'node:http';
import { WebSocketServer } from 'ws';

const flags = {};
for (let i = 2; i < process.argv.length; i += 2) flags[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const number = (name, fallback) => (flags[name] === undefined ? fallback : Number(flags[name]));
const PORT = number('port', 3000);
const ACTIVE = number('active-ms', 10000);
const IDLE = number('idle-ms', 12000);
const AWAY = number('away-ms', 14000);
const TTL = number('ttl-ms', 16000);
const SWEEP_MS = number('sweep-ms', 1000);

const epoch = Date.now();
let version = 0;
const lastSeen = new Map(); // user -> ms of its last hello or heartbeat
const published = new Map(); // user -> what clients were last sent of it (online users only)
const seqs = new Map(); // user -> its last seq
const sessions = new Map(); // user -> open connections
const clients = new Set(); // sockets past their hello

function presenceAt(age) {
  if (age < ACTIVE) return 'active';
  if (age < IDLE) return 'idle';
  if (age < AWAY) return 'away';
  if (age < TTL) return 'stale';
  return 'offline';
}

/// The user's new state if its presence changed, else null.
function derive(user, now) {
  const seen = lastSeen.get(user);
  const presence = seen === undefined ? 'offline' : presenceAt(now - seen);
  const held = published.get(user);
  if ((held ? held.presence : 'offline') === presence) return null;
  const seq = (seqs.get(user) ?? 0) + 1;
  seqs.set(user, seq);
  const state = { user, presence, sessions: presence === 'offline' ? 0 : sessions.get(user) ?? 0, last_seen: seen ?? now, seq };
  if (presence === 'offline') {
    published.delete(user);
    lastSeen.delete(user);
  } else published.set(user, state);
  return state;
}

function broadcast(changed) {
  if (changed.length === 0) return;
  const from = version + 1;
  version += changed.length;
  const message = JSON.stringify({ type: 'updates', epoch, from, to: version, users: changed });
  for (const ws of clients) if (ws.readyState === ws.OPEN) ws.send(message);
}

function stateMessage() {
  return JSON.stringify({ type: 'state', protocol: 1, epoch, version, now: Date.now(), users: [...published.values()] });
}

function signal(user) {
  const now = Date.now();
  lastSeen.set(user, now);
  const changed = derive(user, now);
  if (changed) broadcast([changed]);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/api/login') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    let user;
    try { user = JSON.parse(body).user; } catch { user = undefined; }
    if (typeof user !== 'string' || user.length === 0) {
      res.writeHead(400).end('expected {"user":"NAME"}');
      return;
    }
    const answer = JSON.stringify({ user, token: user });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) }).end(answer);
  });
});

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false });
wss.on('connection', (ws) => {
  let user = null;
  ws.on('message', (data) => {
    let message;
    try { message = JSON.parse(data); } catch { ws.close(4000, 'not JSON'); return; }
    if (user === null) {
      if (message.type !== 'hello' || typeof message.token !== 'string') { ws.close(4000, 'hello first'); return; }
      user = message.token;
      sessions.set(user, (sessions.get(user) ?? 0) + 1);
      // The change goes to the others first, then this client's state includes it: no gap.
      signal(user);
      ws.send(stateMessage());
      clients.add(ws);
    } else if (message.type === 'heartbeat') {
      signal(user);
    } else if (message.type === 'resync') {
      ws.send(stateMessage());
    }
  });
  ws.on('close', () => {
    clients.delete(ws);
    if (user !== null) sessions.set(user, Math.max(0, (sessions.get(user) ?? 1) - 1));
  });
  ws.on('error', () => {});
});

setInterval(() => {
  const now = Date.now();
  const changed = [];
  for (const user of lastSeen.keys()) {
    const state = derive(user, now);
    if (state) changed.push(state);
  }
  broadcast(changed);
}, SWEEP_MS);

server.listen(PORT, '127.0.0.1', 1024, () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
for (const signalName of ['SIGTERM', 'SIGINT']) process.on(signalName, () => process.exit(0));
