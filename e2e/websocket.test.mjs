// The websocket example driven by scripted clients: node's WebSocket (global in Node 22, behind
// --experimental-websocket in Node 20; run.sh passes the flag when needed) and, to drop a
// connection without a close frame, a minimal WebSocket client on a raw TCP socket.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { getJson, login, sessionsOf, sleep, startServer, THRESHOLDS, transitions, waitFor } from './lib.mjs';

/// A WebSocket client that keeps what it received.
async function client(url) {
  if (typeof WebSocket !== 'function') throw new Error('no global WebSocket: run node with --experimental-websocket');
  const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws');
  const received = [];
  const closed = new Promise((resolve) => ws.addEventListener('close', (e) => resolve(e.code)));
  ws.addEventListener('message', (m) => received.push(JSON.parse(m.data)));
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve);
    ws.addEventListener('error', reject);
  });
  const send = (message) => ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  let beating = null;
  closed.then(() => clearInterval(beating));
  return {
    ws,
    received,
    closed,
    send,
    of: (type) => received.filter((m) => m.type === type),
    // Heartbeats every 500 ms from now on, as a real client would (the server's active < 1 s).
    quiet: () => clearInterval(beating),
    beat(activity) {
      clearInterval(beating);
      send({ type: 'heartbeat', activity });
      beating = setInterval(() => ws.readyState === 1 && send({ type: 'heartbeat', activity }), 500);
    },
  };
}

/// Says hello on a raw TCP connection, then can drop it without a close frame.
async function rawClient(url, hello) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const key = crypto.randomBytes(16).toString('base64');
  socket.write(`GET /ws HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
    + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await new Promise((resolve, reject) => {
    let head = '';
    const onData = (d) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      if (head.startsWith('HTTP/1.1 101')) resolve(); else reject(new Error(head));
    };
    socket.on('data', onData);
  });
  // One masked text frame (client frames must be masked), payload under 64 KiB.
  const payload = Buffer.from(JSON.stringify(hello));
  assert.ok(payload.length < 65536);
  const mask = crypto.randomBytes(4);
  const length = payload.length < 126
    ? Buffer.from([0x80 | payload.length])
    : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const frame = Buffer.concat([Buffer.from([0x81]), length, mask,
    Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]);
  socket.write(frame);
  return { drop: () => socket.destroy() };
}

describe('websocket example with scripted clients', { timeout: 60_000 }, () => {
  let server;
  const open = [];
  const events = () => getJson(`${server.url}/api/events`);
  const sessions = (user) => sessionsOf(server.url, user);
  /// A hello for `user`'s tab `session` (signed in), or a watcher's (`user` null).
  const hello = async (user, session, extra = {}) => Object.assign({ type: 'hello', protocol: 1 },
    user ? { token: await login(server.url, user) } : {}, session !== undefined ? { session } : {}, extra);
  /// The users a client was told about in updates, as { user, presence, sessions } entries.
  const told = (c) => c.of('updates').flatMap((m) => m.users);
  const userView = async (user) => (await getJson(`${server.url}/api/presence`)).users.find((u) => u.user === user);
  const connect = async () => {
    const c = await client(server.url);
    open.push(c);
    return c;
  };

  before(async () => { server = await startServer('websocket'); });
  after(async () => {
    for (const c of open) c.ws.close();
    await server?.stop();
  });

  let watcher;
  let tab1;
  let tab2;

  it('two sessions of one user: one user, active, two sessions; the state first', async () => {
    watcher = await connect();
    watcher.send(await hello(null)); // no sign-in: a watcher, with no presence of its own
    await waitFor(() => watcher.of('state').length === 1, { what: 'state for the watcher' });
    tab1 = await connect();
    tab1.send(await hello('wes', 'w-1'));
    await waitFor(() => tab1.of('state').length === 1, { what: 'state for tab 1' });
    tab2 = await connect();
    tab2.send(await hello('wes', 'w-2'));
    await waitFor(() => tab2.of('state').length === 1, { what: 'state for tab 2' });
    assert.deepEqual(tab2.of('state')[0].users.find((u) => u.user === 'wes')?.sessions, 2);

    const s = await waitFor(async () => { const x = await sessions('wes'); return x.length === 2 && x; });
    assert.deepEqual(s.map((x) => [x.session, x.presence, x.connected]), [['w-1', 'active', true], ['w-2', 'active', true]]);
    assert.notEqual(s[0].connection, s[1].connection, 'a connection id per WebSocket');
    assert.deepEqual(transitions(await events(), 'wes'), ['offline>active']);
    // The watcher got the transition, and the tab count change without one.
    await waitFor(() => told(watcher).some((u) => u.user === 'wes' && u.presence === 'active'), { what: 'broadcast' });
    await waitFor(() => told(watcher).some((u) => u.user === 'wes' && u.sessions === 2), { what: 'tab count' });
  });

  it('both in the background: the user goes away, broadcast to everyone', async () => {
    tab1.beat('background');
    tab2.beat('background');
    await waitFor(async () => (await userView('wes'))?.presence === 'away', { what: 'wes away' });
    assert.deepEqual(transitions(await events(), 'wes'), ['offline>active', 'active>away']);
    await waitFor(() => told(watcher).some((u) => u.user === 'wes' && u.presence === 'away'),
      { what: 'the watcher told' });
  });

  it('garbage: refused to the sender, nothing changed for anyone', async () => {
    const before = await events();
    tab1.send({ type: 'heartbeat', activity: 'dancing' });
    tab1.send('not json');
    tab1.send(await hello('wes', 'w-1'));
    await waitFor(() => tab1.of('refused').length === 3, { what: 'three refusals' });
    assert.deepEqual(tab1.of('refused').map((e) => e.code), ['bad_message', 'bad_message', 'bad_message']);
    assert.match(tab1.of('refused')[2].message, /hello was already said/);

    const early = await connect();
    early.send({ type: 'heartbeat', activity: 'active' });
    assert.equal(await early.closed, 4000, 'a heartbeat before the hello closes with 4000');

    for (const [message, code, refusal] of [
      [await hello('eve', 'w-1'), 1008, 'session_taken'],
      [await hello('eve', ''), 1008, 'bad_message'],
      [await hello(null, 'e-1', { token: 'eve.forged' }), 1008, 'unauthorized'],
      [await hello('eve', 'e-2', { activity: 'dancing' }), 4000, null],
      [await hello('eve', 'e-2', { protocol: 2 }), 4002, null],
    ]) {
      const c = await connect();
      c.send(message);
      assert.equal(await c.closed, code, `refused and closed: ${JSON.stringify(message)}`);
      assert.equal(c.of('refused')[0]?.code ?? null, refusal, JSON.stringify(message));
    }
    const binary = await connect();
    binary.ws.send(new Uint8Array([1, 2, 3]));
    assert.equal(await binary.closed, 1003, 'a binary frame closes with 1003');
    const huge = await connect();
    huge.send('x'.repeat(100000));
    assert.equal(await huge.closed, 1009, 'an oversized message closes with 1009');
    await sleep(200);
    assert.deepEqual(await events(), before, 'no event');
    assert.deepEqual((await sessions('wes')).map((x) => [x.session, x.activity, x.connected]),
      [['w-1', 'background', true], ['w-2', 'background', true]]);
    assert.equal(await userView('eve'), undefined);
  });

  it('a hello that says background starts away: never active, not for an instant', async () => {
    const hidden = await connect();
    hidden.send(await hello('hana', 'h-1', { activity: 'background' }));
    await waitFor(() => hidden.of('state').length === 1, { what: 'state for hana' });
    await waitFor(async () => (await userView('hana'))?.presence === 'away', { what: 'hana away' });
    assert.deepEqual(transitions(await events(), 'hana'), ['offline>away']);
    assert.deepEqual((await sessions('hana')).map((x) => [x.session, x.activity]), [['h-1', 'background']]);
    hidden.ws.close();
  });

  it('a reconnect re-attaches the session: new connection, no event', async () => {
    const before = transitions(await events(), 'wes');
    const old = (await sessions('wes')).find((x) => x.session === 'w-2').connection;
    const again = await connect();
    // A client says what it is doing in every hello: still in the background.
    again.send(await hello('wes', 'w-2', { activity: 'background' }));
    again.beat('background');
    await waitFor(() => again.of('state').length === 1);
    const now = (await sessions('wes')).find((x) => x.session === 'w-2');
    assert.notEqual(now.connection, old);
    // The old socket closing now names a connection that is no longer the session's: ignored.
    tab2.ws.close();
    await tab2.closed;
    await sleep(200);
    assert.equal((await sessions('wes')).find((x) => x.session === 'w-2').connected, true);
    tab2 = again;
    assert.deepEqual(transitions(await events(), 'wes'), before);
  });

  it('a close frame is clean (short grace), a dropped connection is lost (long grace)', async () => {
    const dropped = await rawClient(server.url, await hello('wes', 'w-3'));
    await waitFor(async () => (await sessions('wes')).some((x) => x.session === 'w-3'), { what: 'w-3' });
    dropped.drop();
    tab1.ws.close(1000);
    const [s1, s3] = await waitFor(async () => {
      const s = await sessions('wes');
      const one = s.find((x) => x.session === 'w-1');
      const three = s.find((x) => x.session === 'w-3');
      return one && three && !one.connected && !three.connected && [one, three];
    }, { what: 'both closed' });
    // The state's `now` may be up to a second old (a state is shared for a second).
    const { now } = await getJson(`${server.url}/api/presence`);
    assert.ok(s1.expires_at - now <= THRESHOLDS['leave-grace-ms'] + 1000, `clean: expires in ${s1.expires_at - now} ms`);
    assert.ok(s3.expires_at - now > THRESHOLDS['leave-grace-ms'] + 2000, `lost: expires in ${s3.expires_at - now} ms`);
    await waitFor(async () => !(await sessions('wes')).some((x) => x.session === 'w-1'), { what: 'w-1 expired' });
    assert.ok((await sessions('wes')).some((x) => x.session === 'w-3'), 'the lost one is still in its grace');
  });

  it('a heartbeat on an expired session whose socket stayed open connects it again', async () => {
    const rita = await connect();
    rita.send(await hello('rita', 'r-1'));
    rita.beat('active');
    await waitFor(() => rita.of('state').length === 1);
    // The session ends while the socket stays open (as after a laptop slept past the TTL).
    rita.quiet();
    rita.send({ type: 'leave' });
    await waitFor(async () => (await sessions('rita')).length === 0, { what: 'r-1 expired' });
    rita.send({ type: 'heartbeat', activity: 'idle' });
    const [back] = await waitFor(async () => { const s = await sessions('rita'); return s.length === 1 && s; },
      { what: 'r-1 back' });
    assert.deepEqual([back.session, back.activity, back.connected], ['r-1', 'idle', true]);
    const seen = transitions(await events(), 'rita');
    assert.equal(seen[0], 'offline>active');
    // Connected again with the heartbeat's activity: straight to idle, never active on the way.
    assert.ok(seen.at(-2).endsWith('>offline'), `${seen}`);
    assert.equal(seen.at(-1), 'offline>idle', `${seen}`);
    assert.deepEqual(rita.of('refused'), []);
    rita.ws.close();
  });

  it('the last session gone: the user goes offline, once', async () => {
    tab2.ws.close(1000);
    await waitFor(async () => transitions(await events(), 'wes').at(-1)?.endsWith('>offline'),
      { timeout: 15000, what: 'wes offline' });
    const seen = transitions(await events(), 'wes');
    assert.equal(seen.filter((t) => t.endsWith('>offline')).length, 1, `${seen}`);
    assert.deepEqual(await sessions('wes'), []);
    await waitFor(() => told(watcher).some((u) => u.user === 'wes' && u.presence === 'offline'),
      { what: 'the watcher told' });
  });
});
