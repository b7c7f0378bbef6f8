// The browser client's resync rule, in Chromium, against a scripted server (node's `ws`) that
// misbehaves on purpose: a skipped version, an old user seq, updates of another epoch, a state
// that replaces everything; and the same for rooms (old entries, a gap, a new epoch). And a burst against the real socketio example: a page keeps up with
// 200 users arriving at once and leaving at once. Run by run.sh.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { WebSocketServer } from 'ws';
import { login, startBrowser, startServer, waitFor } from './lib.mjs';

const CLIENT = 'heartbeat=300&hidden=1500&idle=600000&reconnect=300&reconnectMax=1000';

const user = (name, presence, seq, sessions = 1) => ({ user: name, presence, sessions, last_seen: 1, seq });

describe('the browser client in Chromium', { timeout: 120_000 }, () => {
  let chrome;
  let pages; // the websocket example serves the page (its transport: a plain WebSocket)
  let socketio;

  before(async () => {
    chrome = await startBrowser();
    pages = await startServer('websocket');
    socketio = await startServer('socketio');
  });

  after(async () => {
    await chrome?.close();
    await pages?.stop();
    await socketio?.stop();
  });

  it('applies the resync rule: gaps, old news and a new epoch', async () => {
    // The scripted server: records what the client sends, sends what the test says.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => wss.once('listening', resolve));
    const received = [];
    let socket;
    const connected = new Promise((resolve) => wss.on('connection', (ws) => {
      socket = ws;
      ws.on('message', (m) => received.push(JSON.parse(m.toString())));
      resolve();
    }));
    const send = (m) => socket.send(JSON.stringify(m));
    const resyncs = () => received.filter((m) => m.type === 'resync').length;
    const page = chrome.context.pages()[0];
    try {
      const ws = `ws://127.0.0.1:${wss.address().port}`;
      await page.goto(`${pages.url}/?ws=${encodeURIComponent(ws)}&${CLIENT}`);
      await connected;
      await waitFor(() => received.some((m) => m.type === 'hello'), { what: 'a hello' });
      const shown = () => page.evaluate(() => Object.fromEntries([...window.demo.client.users]
        .map(([name, u]) => [name, u.presence])));

      send({ type: 'state', protocol: 1, epoch: 1, version: 5, now: 1, users: [user('ann', 'active', 3)] });
      await waitFor(async () => (await shown()).ann === 'active', { what: 'the state applied' });

      // Version 6 never came: the client asks for the state, and ignores updates until it has it.
      send({ type: 'updates', epoch: 1, from: 7, to: 7, users: [user('ann', 'away', 4)] });
      await waitFor(() => resyncs() === 1, { what: 'a resync after a gap' });
      send({ type: 'updates', epoch: 1, from: 8, to: 8, users: [user('ann', 'stale', 5)] });
      assert.deepEqual(await shown(), { ann: 'active' }, 'nothing applied while resyncing');

      send({ type: 'state', protocol: 1, epoch: 1, version: 8, now: 1,
        users: [user('ann', 'idle', 6), user('bob', 'active', 1)] });
      await waitFor(async () => (await shown()).bob === 'active', { what: 'the new state applied' });
      assert.deepEqual(await shown(), { ann: 'idle', bob: 'active' });

      // Old news (ann's seq 5 < 6) is skipped, bob's newer state applies, in one message.
      send({ type: 'updates', epoch: 1, from: 9, to: 10, users: [user('ann', 'active', 5), user('bob', 'away', 2)] });
      await waitFor(async () => (await shown()).bob === 'away', { what: 'bob away' });
      assert.deepEqual(await shown(), { ann: 'idle', bob: 'away' });
      // Offline removes the user.
      send({ type: 'updates', epoch: 1, from: 11, to: 11, users: [user('bob', 'offline', 3, 0)] });
      await waitFor(async () => !('bob' in (await shown())), { what: 'bob gone' });
      assert.equal(resyncs(), 1);

      // A restarted server: another epoch, versions and seqs from the start. Resync, replace.
      send({ type: 'updates', epoch: 2, from: 1, to: 1, users: [user('cid', 'active', 1)] });
      await waitFor(() => resyncs() === 2, { what: 'a resync on a new epoch' });
      send({ type: 'state', protocol: 1, epoch: 2, version: 1, now: 1, users: [user('cid', 'active', 1)] });
      await waitFor(async () => JSON.stringify(await shown()) === JSON.stringify({ cid: 'active' }),
        { what: 'only what the new server holds: no ghost of ann' });
      // The page shows ann offline, not online.
      assert.equal(await page.evaluate(() => window.demo.users.get('ann')?.presence), 'offline');

      // A subscribed feed (scope `users`): the client names its users, versions skip those of
      // other users and are no gap; an update inside the state held is skipped.
      await page.evaluate(() => window.demo.client.subscribe(['dan', 'eve']));
      await waitFor(() => received.some((m) => m.type === 'subscribe'), { what: 'a subscribe' });
      assert.deepEqual(received.find((m) => m.type === 'subscribe').users, ['dan', 'eve']);
      send({ type: 'state', protocol: 1, epoch: 2, version: 10, now: 1, scope: 'users',
        users: [user('dan', 'active', 4)] });
      await waitFor(async () => JSON.stringify(await shown()) === JSON.stringify({ dan: 'active' }),
        { what: 'the subscribed state' });
      send({ type: 'updates', epoch: 2, from: 9, to: 9, users: [user('dan', 'away', 9)] });
      send({ type: 'updates', epoch: 2, from: 14, to: 14, users: [user('eve', 'idle', 2)] });
      await waitFor(async () => (await shown()).eve === 'idle', { what: 'eve after a skip' });
      assert.deepEqual(await shown(), { dan: 'active', eve: 'idle' }, 'version 9 was in the state');
      assert.equal(resyncs(), 2, 'a skipped version of a subscribed feed is no gap');
    } finally {
      wss.close();
    }
  });

  it('applies the room rule: old entries, a gap, a new epoch, rooms it does not hold', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => wss.once('listening', resolve));
    const received = [];
    let socket;
    const connected = new Promise((resolve) => wss.on('connection', (ws) => {
      socket = ws;
      ws.on('message', (m) => received.push(JSON.parse(m.toString())));
      resolve();
    }));
    const send = (m) => socket.send(JSON.stringify(m));
    const resyncs = () => received.filter((m) => m.type === 'room_resync').map((m) => m.room);
    const member = (name, section, version, change = 'updated') => ({
      version, change, user: name, presence: 'active', sessions: [{ session: `${name}-1`, meta: { name, section } }],
    });
    const page = await chrome.context.newPage();
    try {
      const ws = `ws://127.0.0.1:${wss.address().port}`;
      await page.goto(`${pages.url}/?ws=${encodeURIComponent(ws)}&${CLIENT}`);
      await connected;
      // A watcher page follows every document.
      await waitFor(() => received.filter((m) => m.type === 'watch').length === 3, { what: 'three watches' });
      assert.deepEqual(received.filter((m) => m.type === 'watch').map((m) => m.room), ['doc-design', 'doc-roadmap', 'doc-budget']);
      send({ type: 'state', protocol: 1, epoch: 1, version: 0, now: 1, users: [] });
      const sections = () => page.evaluate(() => {
        const view = window.demo.client.rooms.get('doc-design');
        return view && Object.fromEntries([...view.members.values()].map((m) => [m.user, m.sessions[0].meta.section]));
      });
      const version = () => page.evaluate(() => window.demo.client.rooms.get('doc-design').version);

      send({ type: 'room_state', room: 'doc-design', epoch: 7, version: 5, members: [member('ann', 1)] });
      await waitFor(async () => (await sections())?.ann === 1, { what: 'the room state applied' });
      // Updates before the state are no news; a batch that reaches past it applies what is newer.
      send({ type: 'room_updates', room: 'doc-design', epoch: 7, from: 4, to: 5, members: [member('ann', 8, 5)] });
      send({ type: 'room_updates', room: 'doc-design', epoch: 7, from: 5, to: 6,
        members: [member('ann', 9, 5), member('bob', 2, 6, 'joined')] });
      await waitFor(async () => (await sections())?.bob === 2, { what: 'bob applied' });
      assert.deepEqual(await sections(), { ann: 1, bob: 2 }, "ann's old entry skipped");
      assert.equal(await version(), 6);

      // Version 7 never came: the page asks for the room, and ignores its updates until then.
      send({ type: 'room_updates', room: 'doc-design', epoch: 7, from: 8, to: 8, members: [member('ann', 4, 8)] });
      await waitFor(() => resyncs().length === 1, { what: 'a room_resync after a gap' });
      assert.deepEqual(resyncs(), ['doc-design']);
      send({ type: 'room_updates', room: 'doc-design', epoch: 7, from: 9, to: 9, members: [member('ann', 5, 9)] });
      send({ type: 'room_state', room: 'doc-design', epoch: 7, version: 9, members: [member('ann', 3), member('bob', 2)] });
      await waitFor(async () => (await sections())?.ann === 3, { what: 'the new room state applied' });
      assert.deepEqual(await sections(), { ann: 3, bob: 2 });

      // A room that left: an offline member goes.
      send({ type: 'room_updates', room: 'doc-design', epoch: 7, from: 10, to: 10,
        members: [{ version: 10, change: 'left', user: 'bob', presence: 'offline', sessions: [] }] });
      await waitFor(async () => !('bob' in (await sections())), { what: 'bob left' });

      // Another history of the room (it emptied and filled again, or the server restarted).
      send({ type: 'room_updates', room: 'doc-design', epoch: 8, from: 1, to: 1, members: [member('cid', 1, 1, 'joined')] });
      await waitFor(() => resyncs().length === 2, { what: 'a room_resync on a new epoch' });
      send({ type: 'room_state', room: 'doc-design', epoch: 8, version: 1, members: [member('cid', 1)] });
      await waitFor(async () => JSON.stringify(await sections()) === JSON.stringify({ cid: 1 }), { what: 'only the new history' });

      // Rooms the page neither joined nor watches are ignored.
      send({ type: 'room_state', room: 'doc-secret', epoch: 1, version: 1, members: [member('eve', 1)] });
      send({ type: 'room_updates', room: 'doc-secret', epoch: 1, from: 2, to: 2, members: [member('eve', 2, 2)] });
      await waitFor(() => page.evaluate(() => document.querySelector('#docs tr[data-doc="doc-design"]')?.dataset.members === 'cid'),
        { what: 'the documents table renders the room' });
      assert.equal(await page.evaluate(() => window.demo.client.rooms.has('doc-secret')), false);
      assert.equal(resyncs().length, 2);
    } finally {
      await page.close();
      wss.close();
    }
  });

  it('keeps up with a burst: 200 users arrive at once, then leave at once', async () => {
    const page = await chrome.context.newPage();
    await page.goto(`${socketio.url}/?${CLIENT}`); // no sign-in: a watcher
    await waitFor(() => page.evaluate(() => window.demo.client?.status === 'connected'), { what: 'the watcher connected' });
    const tokens = await Promise.all(Array.from({ length: 200 }, (_, i) => login(socketio.url, `burst-${i}`)));
    const sockets = tokens.map((token, i) => io(socketio.url, {
      auth: { protocol: 1, session: `b-${i}`, token }, transports: ['websocket'], forceNew: true, reconnection: false,
    }));
    const online = () => page.evaluate(() => [...window.demo.client.users.keys()].filter((u) => u.startsWith('burst-')).length);
    await waitFor(async () => (await online()) === 200, { timeout: 20000, what: 'the page shows all 200' });
    for (const s of sockets) s.close();
    // Clean closes: offline after the leave grace.
    await waitFor(async () => (await online()) === 0, { timeout: 20000, what: 'the page shows none of them' });
    assert.equal(await page.evaluate(() => window.demo.client.status), 'connected', 'the page was never dropped');
    const rendered = await page.evaluate(() => document.querySelectorAll('tr[data-presence="offline"]').length);
    assert.ok(rendered >= 200, `the page lists them offline (last seen): ${rendered}`);
    await page.close();
  });
});
