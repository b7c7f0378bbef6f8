// Rooms driven by scripted clients of another stack than the browser: socket.io-client against
// the socketio example and node's WebSocket against the websocket example. Members, watchers
// and outsiders; bursts of metadata updates faster than the server takes them, and garbage.
// Each client keeps the room by the protocol's rule and counts what it received: in the end
// every member and watcher holds exactly the room the server publishes, outsiders were sent
// no room message, and every refusal has the code it should. Run by run.sh.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { getJson, HeldRoom, login, shownOf, sleep, startServer, waitFor } from './lib.mjs';

const ROOM = 'burst';

/// Refusal codes in a stable order, for comparison.
const sorted = (codes) => [...codes].sort();

/// The garbage every member sends, and the codes it must be refused with (one each).
const GARBAGE = [
  ['join', 'x', 'bad_message'],
  ['join', { room: 42 }, 'bad_message'],
  ['join', {}, 'bad_message'],
  ['update', { room: 'nowhere', meta: {} }, 'not_in_room'],
  ['leave_room', { room: 'nowhere' }, 'not_in_room'],
  ['watch', { room: '' }, 'bad_message'],
  ['join', { room: 'elsewhere', meta: { big: 'x'.repeat(5000) } }, 'metadata_too_large'],
  ['unwatch', { room: 'nowhere' }, 'not_watching'],
  ['room_resync', { room: 'nowhere' }, 'not_in_room'],
];

describe('rooms with scripted clients', { timeout: 120_000 }, () => {
  describe('socket.io-client against the socketio example', () => {
    let server;
    const sockets = [];
    before(async () => { server = await startServer('socketio'); });
    after(async () => {
      for (const s of sockets) s.close();
      await server?.stop();
    });

    /// A socket.io client; `rooms` in its hello; keeps the room and counts.
    const connect = (auth) => {
      const socket = io(server.url, { auth, transports: ['websocket'], forceNew: true, reconnection: false });
      sockets.push(socket);
      const c = { socket, refusals: [], roomMessages: 0, userMessages: 0 };
      c.held = new HeldRoom(ROOM, () => socket.emit('room_resync', { room: ROOM }));
      socket.on('presence', (m) => {
        if (m.type.startsWith('room_')) {
          c.roomMessages += 1;
          c.held.apply(m);
        } else {
          c.userMessages += 1;
        }
      });
      socket.on('refused', (r) => {
        c.refusals.push(r);
        // As the browser client does: the latest metadata again once the server takes it.
        if (r.code === 'metadata_too_frequent' && c.last) {
          setTimeout(() => socket.emit('update', { room: ROOM, meta: c.last }), r.retry_after_ms);
        }
      });
      return c;
    };

    it('members, watchers and outsiders: bursts and garbage, and each ends holding the room', async () => {
      const N = 30;
      const tokens = await Promise.all(Array.from({ length: N + 5 }, (_, i) => login(server.url, `m-${i}`)));
      const members = Array.from({ length: N }, (_, i) => connect({
        protocol: 1, session: `ms-${i}`, token: tokens[i], rooms: [{ room: ROOM, meta: { n: 0 } }],
      }));
      const watchers = Array.from({ length: 5 }, () => connect({ protocol: 1 }));
      const outsiders = Array.from({ length: 5 }, (_, i) => connect({ protocol: 1, session: `os-${i}`, token: tokens[N + i] }));
      await waitFor(() => [...members, ...watchers, ...outsiders].every((c) => c.socket.connected), { what: 'all connected' });
      for (const w of watchers) w.socket.emit('watch', { room: ROOM });
      await waitFor(() => [...members, ...watchers].every((c) => c.held.members.size === N),
        { timeout: 20000, what: 'every member and watcher holds the 30 members' });

      // A burst: 20 updates from every member at once, far faster than the 50 ms bound. Some
      // are taken, the rest refused with when to retry; then garbage; then a last update.
      for (const [i, c] of members.entries()) {
        for (let k = 1; k <= 20; k++) c.socket.emit('update', { room: ROOM, meta: { n: k, i } });
        for (const [event, payload] of GARBAGE) c.socket.emit(event, payload);
      }
      await sleep(200);
      for (const c of members) {
        c.last = { n: 'last' };
        c.socket.emit('update', { room: ROOM, meta: c.last });
      }

      const want = Object.fromEntries(members.map((_, i) => [`m-${i}`, ['last']]));
      await waitFor(async () => JSON.stringify(shownOf(await getJson(`${server.url}/api/rooms/${ROOM}`))) === JSON.stringify(
        Object.fromEntries(Object.entries(want).sort(([a], [b]) => a.localeCompare(b)))), { timeout: 20000, what: 'the server has every last update' });
      const published = await getJson(`${server.url}/api/rooms/${ROOM}`);
      await waitFor(() => [...members, ...watchers].every((c) => c.held.version === published.version && !c.held.resyncing),
        { timeout: 20000, what: 'every member and watcher at the published version' });

      const totals = { states: 0, updates: 0, gaps: 0, epochs: 0, messages: 0, frequent: 0 };
      for (const c of [...members, ...watchers]) {
        assert.deepEqual(c.held.shown(), shownOf(published), 'holds the room the server publishes');
        assert.equal(c.held.count.foreign, 0, 'no other room');
        for (const k of ['states', 'updates', 'gaps', 'epochs']) totals[k] += c.held.count[k];
        totals.messages += c.roomMessages;
      }
      for (const c of members) {
        const frequent = c.refusals.filter((r) => r.code === 'metadata_too_frequent');
        assert.ok(frequent.every((r) => r.room === ROOM && r.retry_after_ms > 0 && r.retry_after_ms <= 50), JSON.stringify(frequent[0]));
        totals.frequent += frequent.length;
        const rest = c.refusals.filter((r) => r.code !== 'metadata_too_frequent');
        assert.deepEqual(sorted(rest.map((r) => r.code)), sorted(GARBAGE.map(([, , code]) => code)), 'each garbage refused once, with its code');
        assert.ok(c.socket.connected, 'garbage does not cost the connection');
      }
      assert.ok(totals.frequent >= N * 15, `most of the burst refused as too frequent: ${totals.frequent}`);
      for (const c of outsiders) {
        assert.equal(c.roomMessages, 0, 'an outsider is sent no room message');
        assert.equal(c.refusals.length, 0);
      }
      // Gathered: a burst is a few messages per client, not one per change.
      const perClient = totals.messages / (members.length + watchers.length);
      console.log(`socket.io: ${members.length} members, ${watchers.length} watchers; per client ${perClient.toFixed(1)} room messages`
        + ` (states ${totals.states}, updates ${totals.updates}, gaps ${totals.gaps}, new epochs ${totals.epochs}); refused as too frequent ${totals.frequent}`);
      assert.ok(perClient < 60, `room messages per client: ${perClient}`);
      const changes = published.version; // every change the room published, from its start
      assert.ok(perClient < changes, `gathered: ${perClient} messages for ${changes} versions`);

      // Everyone leaves: the room empties, and the watchers see it empty.
      for (const c of members) c.socket.emit('leave_room', { room: ROOM });
      await waitFor(() => watchers.every((w) => w.held.members.size === 0), { what: 'the watchers see the room empty' });
      assert.deepEqual((await getJson(`${server.url}/api/rooms/${ROOM}`)).members, []);
    });
  });

  describe('WebSocket clients against the websocket example', () => {
    let server;
    const open = [];
    before(async () => { server = await startServer('websocket'); });
    after(async () => {
      for (const ws of open) ws.close();
      await server?.stop();
    });

    const connect = async (hello) => {
      const ws = new WebSocket(server.url.replace(/^http/, 'ws') + '/ws');
      open.push(ws);
      const c = { ws, refusals: [], roomMessages: 0 };
      const send = (m) => ws.send(typeof m === 'string' ? m : JSON.stringify(m));
      c.send = send;
      c.held = new HeldRoom(ROOM, () => send({ type: 'room_resync', room: ROOM }));
      ws.addEventListener('message', (e) => {
        const m = JSON.parse(e.data);
        if (m.type === 'refused') {
          c.refusals.push(m);
          if (m.code === 'metadata_too_frequent' && c.last) {
            setTimeout(() => send({ type: 'update', room: ROOM, meta: c.last }), m.retry_after_ms);
          }
        }
        else if (m.type.startsWith('room_')) {
          c.roomMessages += 1;
          c.held.apply(m);
        }
      });
      await new Promise((resolve, reject) => {
        ws.addEventListener('open', resolve);
        ws.addEventListener('error', reject);
      });
      send(Object.assign({ type: 'hello', protocol: 1 }, hello));
      return c;
    };

    it('bursts, garbage and a dropped connection: every client ends holding the room', async () => {
      const N = 10;
      const members = [];
      for (let i = 0; i < N; i++) {
        members.push(await connect({ session: `w-${i}`, token: await login(server.url, `w-${i}`), rooms: [{ room: ROOM, meta: { n: 0 } }] }));
      }
      const watcher = await connect({});
      watcher.send({ type: 'watch', room: ROOM });
      const outsider = await connect({ session: 'o-1', token: await login(server.url, 'outsider') });
      await waitFor(() => [...members, watcher].every((c) => c.held.members.size === N), { what: 'all hold the room' });

      for (const [i, c] of members.entries()) {
        for (let k = 1; k <= 10; k++) c.send({ type: 'update', room: ROOM, meta: { n: k, i } });
        c.send('not json');
        c.send({ type: 'join' });
        c.send({ type: 'leave_room', room: 'nowhere' });
        c.send({ type: 'join', room: 'elsewhere', meta: { big: 'x'.repeat(5000) } });
      }
      await sleep(200);
      for (const c of members) {
        c.last = { n: 'last' };
        c.send({ type: 'update', room: ROOM, meta: c.last });
      }
      // One member closes its connection: its session stays in the room for the leave grace,
      // then expires and leaves it.
      members[0].ws.close();

      const done = async () => {
        const room = await getJson(`${server.url}/api/rooms/${ROOM}`);
        return room.members.length === N && room.members.every((m) => m.sessions[0].meta.n === 'last') && room;
      };
      const published = await waitFor(done, { what: 'the server has every last update' });
      const live = [...members.slice(1), watcher];
      await waitFor(() => live.every((c) => c.held.version === published.version), { what: 'all at the published version' });
      for (const c of live) {
        assert.deepEqual(c.held.shown(), shownOf(published));
        assert.equal(c.held.count.foreign, 0);
      }
      for (const c of members.slice(1)) {
        const rest = c.refusals.filter((r) => r.code !== 'metadata_too_frequent').map((r) => r.code);
        assert.deepEqual(sorted(rest), sorted(['bad_message', 'bad_message', 'not_in_room', 'metadata_too_large']));
      }
      assert.equal(outsider.roomMessages, 0);
      const left = await waitFor(async () => {
        const room = await getJson(`${server.url}/api/rooms/${ROOM}`);
        return room.members.length === N - 1 && room;
      }, { timeout: 10000, what: 'the closed member left after the grace' });
      assert.ok(!left.members.some((m) => m.user === 'w-0'));
      await waitFor(() => live.every((c) => c.held.version === left.version), { what: 'all told' });
      for (const c of live) assert.deepEqual(c.held.shown(), shownOf(left));
      const perClient = live.reduce((n, c) => n + c.roomMessages, 0) / live.length;
      console.log(`websocket: ${N} members and a watcher; per client ${perClient.toFixed(1)} room messages for ${published.version} versions`);
    });
  });
});
