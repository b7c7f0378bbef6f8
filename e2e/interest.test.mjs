// Presence by interest over Socket.IO, with scripted socket.io-client clients against the
// socketio example run with `--all-users off`: a socket is sent the users its hello names and
// nobody else, `subscribe` replaces the list with a state of the new one, and asking for
// everyone is refused. Each client counts every user it was sent. And the demo page in
// Chromium on the same kind of server: its list shows the people in the documents, follows them
// as they open and leave documents, and offers no "everyone" view. Run by run.sh.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { login, startBrowser, startServer, THRESHOLDS, waitFor } from './lib.mjs';

describe('users by interest over Socket.IO', { timeout: 60_000 }, () => {
  let server;
  const sockets = [];
  before(async () => {
    server = await startServer('socketio', THRESHOLDS, { extra: ['--all-users', 'off'] });
  });
  after(async () => {
    for (const s of sockets) s.close();
    await server?.stop();
  });

  /// A signed-in socket whose hello names `users` (undefined: none named); what it was sent.
  async function connect(user, users) {
    const token = await login(server.url, user);
    const auth = { protocol: 1, session: `tab-${user}`, token };
    if (users) auth.users = users;
    const socket = io(server.url, { auth, transports: ['websocket'], forceNew: true, reconnection: false });
    sockets.push(socket);
    const c = { socket, messages: [], refusals: [], named: new Set() };
    socket.on('presence', (m) => {
      if (m.type === 'welcome') return; // its session's handle in rooms
      c.messages.push(m);
      for (const u of m.users ?? []) c.named.add(u.user);
    });
    socket.on('refused', (r) => c.refusals.push(r));
    await waitFor(() => c.messages.length > 0, { what: `${user}'s first state` });
    return c;
  }

  const last = (c) => c.messages[c.messages.length - 1];
  const names = (m) => m.users.map((u) => u.user).sort();

  it('sends a socket the users it names and nobody else', async () => {
    const bob = await connect('bob');
    assert.deepEqual([bob.messages[0].scope, names(bob.messages[0])], ['users', []],
      'no users named, no all-users feed: nobody');
    await connect('eve');
    const ada = await connect('ada', ['bob', 'cy']);
    assert.deepEqual([ada.messages[0].type, ada.messages[0].scope], ['state', 'users']);
    assert.deepEqual(names(ada.messages[0]), ['bob']);

    await connect('dan');
    await connect('cy');
    await waitFor(() => ada.named.has('cy'), { what: "cy's arrival at ada" });
    assert.equal(last(ada).type, 'updates');
    assert.ok(!ada.named.has('dan') && !ada.named.has('eve'), 'nobody ada did not name');

    // A new list: a state of it comes next.
    const before = ada.messages.length;
    ada.socket.emit('subscribe', { users: ['dan', 'eve'] });
    await waitFor(() => ada.messages.length > before, { what: 'the state of the new list' });
    assert.deepEqual([last(ada).type, names(last(ada))], ['state', ['dan', 'eve']]);

    // Everyone is refused on this server, and changes nothing.
    ada.socket.emit('subscribe', { all_users: true });
    await waitFor(() => ada.refusals.length > 0, { what: 'a refusal' });
    assert.equal(ada.refusals[0].code, 'forbidden');
    ada.socket.emit('subscribe', { users: 'bob' });
    await waitFor(() => ada.refusals.length > 1, { what: 'garbage refused' });
    assert.equal(ada.refusals[1].code, 'bad_message');
    assert.equal(last(ada).type, 'state', 'nothing sent after the refusals');
  });
});

describe('the demo page by interest in Chromium (--all-users off)', { timeout: 60_000 }, () => {
  const CLIENT = 'heartbeat=300&hidden=1500&idle=600000&reconnect=300&reconnectMax=1000';
  let server;
  let chrome;
  const sockets = [];
  before(async () => {
    server = await startServer('socketio', THRESHOLDS, { extra: ['--all-users', 'off'] });
    chrome = await startBrowser();
  });
  after(async () => {
    for (const s of sockets) s.close();
    await chrome?.close();
    await server?.stop();
  });

  /// A signed-in scripted tab, in `rooms`.
  async function tab(user, rooms = []) {
    const token = await login(server.url, user);
    const auth = { protocol: 1, session: `tab-${user}`, token, rooms };
    const socket = io(server.url, { auth, transports: ['websocket'], forceNew: true, reconnection: false });
    sockets.push(socket);
    return socket;
  }

  it('lists the people in the documents, follows them, and has no everyone view', async () => {
    const page = chrome.context.pages()[0];
    await page.goto(`${server.url}/?user=ada&doc=doc-design&${CLIENT}`);
    await waitFor(() => page.evaluate(() => window.demo?.client?.status === 'connected'), { what: 'the page connected' });
    const listed = () => page.evaluate(() => [...document.querySelectorAll('#users tr')].map((r) => r.dataset.user).sort().join(','));
    assert.equal(await page.evaluate(() => window.demo.usersView()), 'docs');
    assert.equal(await page.evaluate(() => document.getElementById('users-view-everyone').hidden), true);

    const bob = await tab('bob', [{ room: 'doc-roadmap', meta: { name: 'bob', color: '#333', section: 1 } }]);
    const carol = await tab('carol'); // online, in no document
    await waitFor(async () => (await listed()) === 'ada,bob', { what: 'ada and bob listed, carol not' });

    carol.emit('join', { room: 'doc-budget', meta: { name: 'carol', color: '#444', section: 1 } });
    await waitFor(async () => (await listed()) === 'ada,bob,carol', { what: 'carol listed once in a document' });
    const presence = await page.evaluate(() => window.demo.users.get('carol')?.presence);
    assert.equal(presence, 'active');

    // Bob leaves his document: he leaves the list (he is not shown offline: he is not asked for).
    bob.emit('leave_room', { room: 'doc-roadmap' });
    await waitFor(async () => (await listed()) === 'ada,carol', { what: 'bob off the list' });
    const shownBob = await page.evaluate(() => window.demo.history.get('bob'));
    assert.ok(!shownBob.includes('offline'), `bob was never shown offline: ${shownBob}`);
  });
});
