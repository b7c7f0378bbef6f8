// The demo's JSON routes ask the hook the sockets ask: against the websocket example as the
// demo runs it (watchers and the every-user feed on) and locked down (`--watchers off
// --all-users off`), with plain HTTP requests, anonymous, with a forged token and signed in.
// Room states show sessions by handle; `/api/events` answers a page at a time. Run by run.sh.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { login, startServer, THRESHOLDS, waitFor } from './lib.mjs';

/// A GET's status and its JSON body (or text), with `token` as a bearer token.
async function get(url, token) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(url, { headers });
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch (_) { /* a text answer */ }
  return { status: response.status, body };
}

/// A WebSocket client of `url` whose hello is `hello`; what it was sent.
async function connect(url, hello) {
  const ws = new WebSocket(url.replace('http', 'ws') + '/ws');
  const seen = [];
  ws.onmessage = (m) => seen.push(JSON.parse(m.data));
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, ...hello }));
  return { ws, seen };
}

describe('the JSON routes through the hook', { timeout: 60_000 }, () => {
  let open;
  let locked;
  const sockets = [];
  before(async () => {
    open = await startServer('websocket', THRESHOLDS);
    locked = await startServer('websocket', THRESHOLDS, { extra: ['--watchers', 'off', '--all-users', 'off'] });
  });
  after(async () => {
    for (const s of sockets) s.ws.close();
    await open?.stop();
    await locked?.stop();
  });

  it('as the demo runs: anyone reads a room, by handles, and the events a page at a time', async () => {
    const token = await login(open.url, 'ada');
    const tab = await connect(open.url, { token, session: 'ada-private-tab', rooms: [{ room: 'doc', meta: { n: 1 } }] });
    sockets.push(tab);
    await waitFor(() => tab.seen.some((m) => m.type === 'room_state'), { what: 'ada in doc' });
    const welcome = tab.seen[0];
    assert.equal(welcome.type, 'welcome', 'the welcome comes first');
    const room = await get(`${open.url}/api/rooms/doc`);
    assert.equal(room.status, 200);
    assert.deepEqual(room.body.members.map((m) => m.sessions.map((s) => s.session)), [[welcome.session]]);
    assert.ok(!JSON.stringify(room.body).includes('ada-private-tab'), 'no session id on the wire');

    const bob = await login(open.url, 'bob');
    sockets.push(await connect(open.url, { token: bob, session: 'bob-tab' }));
    await waitFor(async () => (await get(`${open.url}/api/events`)).body.length >= 2, { what: 'two events' });
    const all = (await get(`${open.url}/api/events`)).body;
    const first = await get(`${open.url}/api/events?limit=1`);
    assert.deepEqual(first.body, all.slice(0, 1));
    const rest = await get(`${open.url}/api/events?after=${all[0].version}`);
    assert.deepEqual(rest.body, all.slice(1));
    assert.equal((await get(`${open.url}/api/events?after=x`)).status, 400);
    assert.equal((await get(`${open.url}/api/presence`)).status, 200);
    assert.equal((await get(`${open.url}/api/rooms/doc`, 'ada.0000')).status, 401, 'a forged token');
  });

  it('locked down: nothing for the anonymous, no every-user list for anyone', async () => {
    const token = await login(locked.url, 'ada');
    for (const route of ['/api/rooms/doc', '/api/presence', '/api/events', '/api/cluster', '/api/sessions']) {
      assert.equal((await get(`${locked.url}${route}`)).status, 401, `${route} anonymous`);
    }
    assert.equal((await get(`${locked.url}/api/rooms/doc`, token)).status, 200);
    assert.equal((await get(`${locked.url}/api/cluster`, token)).status, 200);
    for (const route of ['/api/presence', '/api/events']) {
      const answer = await get(`${locked.url}${route}`, token);
      assert.equal(answer.status, 403, `${route} signed in`);
      assert.equal(answer.body.code, 'forbidden');
    }
    // A socket without a user is refused too.
    const watcher = await connect(locked.url, {});
    sockets.push(watcher);
    await waitFor(() => watcher.seen.some((m) => m.type === 'refused'), { what: 'the watcher refused' });
    assert.equal(watcher.seen.find((m) => m.type === 'refused').code, 'unauthorized');
  });
});
