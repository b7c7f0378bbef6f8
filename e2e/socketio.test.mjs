// The socketio example in a real Chromium, with the browser client from assets/, and thresholds
// scaled down (see THRESHOLDS in lib.mjs). Asserts on what the server published (/api/events), on
// the sessions it shows their owner (/api/sessions, signed in), and on what the pages show. Run
// by run.sh; alone: `node --test socketio.test.mjs` after `cargo build --example socketio`.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getJson, login, sessionsOf, sleep, startBrowser, startServer, THRESHOLDS, transitions, waitFor } from './lib.mjs';

// The client scaled down like the server: beat every 300 ms while visible (active < 1 s), every
// 1.5 s while hidden (away < 4 s); never idle on its own (no one types in a headless test).
const CLIENT = 'heartbeat=300&hidden=1500&idle=600000&reconnect=300&reconnectMax=1000';

describe('socketio example in Chromium', { timeout: 150_000 }, () => {
  let server;
  let chrome;
  let tabA; // ada's first tab, in window 1
  let tabB; // ada's second tab, in window 2
  let blank; // a blank tab in window 1 that hides tab A

  const pageUrl = (user) => `${server.url}/?user=${user}&${CLIENT}`;
  const events = () => getJson(`${server.url}/api/events`);
  const sessions = (user) => sessionsOf(server.url, user);
  const userView = async (user) => (await getJson(`${server.url}/api/presence`)).users.find((u) => u.user === user);
  const sessionOf = (page) => page.evaluate(() => window.demo.client.sessionId);
  const visibility = (page) => page.evaluate(() => document.visibilityState);
  const connected = (page) => page.evaluate(() => window.demo?.client?.status === 'connected');

  // The server saves its snapshot when stopped and restores it when started: the restart test.
  const snapshot = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'presence-e2e-')), 'snapshot.json');

  before(async () => {
    server = await startServer('socketio', THRESHOLDS, { extra: ['--snapshot', snapshot] });
    chrome = await startBrowser();
  });

  after(async () => {
    await chrome?.close();
    await server?.stop();
  });

  it('two tabs of one user: one user, active, two sessions', async () => {
    tabA = chrome.context.pages()[0];
    await tabA.goto(pageUrl('ada'));
    await waitFor(() => connected(tabA), { what: 'tab A connected' });
    // Tab B in a window of its own, so that both tabs are visible.
    const cdp = await chrome.browser.newBrowserCDPSession();
    [tabB] = await Promise.all([
      chrome.context.waitForEvent('page'),
      cdp.send('Target.createTarget', { url: pageUrl('ada'), newWindow: true }),
    ]);
    await waitFor(() => connected(tabB), { what: 'tab B connected' });
    assert.equal(await visibility(tabA), 'visible');
    assert.equal(await visibility(tabB), 'visible');

    const both = await waitFor(async () => {
      const s = await sessions('ada');
      return s.length === 2 && s.every((x) => x.presence === 'active') && s;
    }, { what: 'two active sessions of ada' });
    assert.deepEqual(new Set(both.map((s) => s.session)), new Set([await sessionOf(tabA), await sessionOf(tabB)]));
    assert.notEqual(await sessionOf(tabA), await sessionOf(tabB), 'each tab has its own session id');
    const ada = await userView('ada');
    assert.equal(ada.presence, 'active');
    assert.equal(ada.sessions, 2);
    assert.deepEqual(transitions(await events(), 'ada'), ['offline>active'], 'one user came online, once');

    // The demo page renders it: ada, active, 2 tabs.
    await waitFor(() => tabA.evaluate(() => {
      const row = document.querySelector('tr[data-user="ada"]');
      return row?.dataset.presence === 'active' && row.cells[2].textContent === '2';
    }), { what: 'the page listing ada as active with 2 tabs' });
  });

  it('one tab hidden, the other active: the user stays active, the hidden session goes away', async () => {
    const before = (await events()).length;
    // A real visibility change: a new tab in tab A's window covers it.
    [blank] = await Promise.all([
      chrome.context.waitForEvent('page'),
      tabA.evaluate(() => { window.open('about:blank', '_blank'); }),
    ]);
    await waitFor(async () => (await visibility(tabA)) === 'hidden', { what: 'tab A hidden' });
    assert.equal(await visibility(tabB), 'visible');

    const [sa, sb] = [await sessionOf(tabA), await sessionOf(tabB)];
    await waitFor(async () => {
      const s = await sessions('ada');
      const a = s.find((x) => x.session === sa);
      return a?.presence === 'away' && a.activity === 'background';
    }, { what: 'the hidden session away' });
    // Longer than the idle threshold: only tab B's heartbeats keep ada up.
    await sleep(2500);
    const s = await sessions('ada');
    assert.equal(s.find((x) => x.session === sa)?.presence, 'away', 'hidden tab: background caps at away');
    assert.equal(s.find((x) => x.session === sb)?.presence, 'active');
    assert.equal((await userView('ada')).presence, 'active');
    assert.deepEqual(transitions((await events()).slice(before), 'ada'), [], 'no user transition for ada');
  });

  it('the active tab closed: the user follows the hidden tab down, no offline event', async () => {
    const before = (await events()).length;
    const sb = await sessionOf(tabB);
    const closedAt = Date.now();
    await tabB.close();
    await waitFor(async () => !(await sessions('ada')).some((x) => x.session === sb),
      { timeout: 10000, what: 'the closed tab\'s session expired' });
    // pagehide sent `leave` and a clean disconnect: the short grace (2 s), not the lost one (6 s).
    assert.ok(Date.now() - closedAt < 5000, `closed session expired after ${Date.now() - closedAt} ms`);
    const ada = await waitFor(async () => {
      const u = await userView('ada');
      return u?.presence === 'away' && u;
    }, { what: 'ada away' });
    assert.equal(ada.sessions, 1);
    const seen = transitions((await events()).slice(before), 'ada');
    assert.ok(seen.length > 0 && seen.at(-1).endsWith('>away'), `ada went down to away: ${seen}`);
    assert.ok(!seen.some((t) => t.endsWith('>offline')), `no offline event while a tab remains: ${seen}`);
  });

  it('a reload: no offline event at all', async () => {
    await blank.close(); // tab A is the only tab of its window again: visible
    await waitFor(async () => (await visibility(tabA)) === 'visible', { what: 'tab A visible' });
    await waitFor(async () => (await userView('ada'))?.presence === 'active', { what: 'ada active' });
    const sa = await sessionOf(tabA);
    const before = (await events()).length;

    await tabA.reload();
    await waitFor(() => connected(tabA), { what: 'tab A connected after the reload' });
    assert.equal(await sessionOf(tabA), sa, 'a reload keeps the session id');
    await sleep(3000); // past the leave grace: an expired session would have shown by now
    const after = (await events()).slice(before);
    assert.deepEqual(after.filter((e) => e.to === 'offline'), [], 'no offline event');
    const s = await sessions('ada');
    assert.deepEqual(s.map((x) => x.session), [sa]);
    assert.equal(s[0].presence, 'active');
  });

  it('the network cut past the grace: stale, then offline; back: active, same session, new socket', async () => {
    const sa = await sessionOf(tabA);
    const socketBefore = await tabA.evaluate(() => window.demo.client.connectionId);
    const connectionBefore = (await sessions('ada'))[0].connection;
    const before = (await events()).length;

    await chrome.context.setOffline(true);
    try {
      await waitFor(async () => transitions((await events()).slice(before), 'ada').some((t) => t.endsWith('>offline')),
        { timeout: 15000, what: 'ada offline' });
    } finally {
      await chrome.context.setOffline(false);
    }
    const down = transitions((await events()).slice(before), 'ada');
    const stale = down.findIndex((t) => t.endsWith('>stale'));
    const offline = down.findIndex((t) => t.endsWith('>offline'));
    assert.ok(stale >= 0 && stale < offline, `stale before offline: ${down}`);
    assert.equal(down[offline], 'stale>offline');

    await waitFor(async () => (await userView('ada'))?.presence === 'active', { timeout: 15000, what: 'ada back' });
    assert.equal(await sessionOf(tabA), sa, 'same session id');
    const socketAfter = await tabA.evaluate(() => window.demo.client.connectionId);
    assert.notEqual(socketAfter, socketBefore, 'a new socket');
    const s = await sessions('ada');
    assert.deepEqual(s.map((x) => x.session), [sa]);
    assert.notEqual(s[0].connection, connectionBefore, 'the server sees a new connection');
    assert.equal(transitions((await events()).slice(before), 'ada').at(-1), 'offline>active');
  });

  it('no input for a while: idle; input again: active', async () => {
    const cdp = await chrome.browser.newBrowserCDPSession();
    const [tab] = await Promise.all([
      chrome.context.waitForEvent('page'),
      cdp.send('Target.createTarget', {
        url: `${server.url}/?user=ida&heartbeat=300&hidden=1500&idle=1500`,
        newWindow: true,
      }),
    ]);
    await waitFor(async () => transitions(await events(), 'ida').includes('active>idle'),
      { what: 'ida idle after 1.5 s without input' });
    assert.deepEqual(transitions(await events(), 'ida'), ['offline>active', 'active>idle']);
    await tab.mouse.move(20, 20);
    await tab.mouse.move(60, 80);
    await waitFor(async () => transitions(await events(), 'ida').at(-1) === 'idle>active',
      { what: 'ida active again after moving the mouse' });
    // Her only tab closed: offline after the leave grace.
    await tab.close();
    await waitFor(async () => transitions(await events(), 'ida').at(-1)?.endsWith('>offline'),
      { what: 'ida offline' });
  });

  it('garbage and forgeries from a client: refused, nothing changed for anyone', async () => {
    const sa = await sessionOf(tabA);
    const eventsBefore = await events();
    const adaBefore = await sessions('ada');

    // A raw socket.io-client from node; resolves with the refusal of its handshake.
    const refused = async (auth) => {
      const socket = io(server.url, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
      const outcome = await new Promise((resolve) => {
        socket.on('connect', () => resolve('connected'));
        socket.on('connect_error', (e) => resolve(JSON.parse(e.message)));
      });
      socket.close();
      return outcome;
    };
    assert.equal((await refused(undefined)).code, 'bad_message');
    assert.equal((await refused({ protocol: 99, session: 'm-1' })).code, 'protocol');
    assert.equal((await refused({ protocol: 1, session: 'm-1', token: 'mallory.0000' })).code, 'unauthorized');
    // A forged token: someone else's name with mallory's signature.
    const forged = (await login(server.url, 'mallory')).replace(/^mallory/, 'ada');
    assert.equal((await refused({ protocol: 1, session: 'm-1', token: forged })).code, 'unauthorized');
    // Signed in as mallory, naming ada's tab: the session is ada's.
    const mallorys = await login(server.url, 'mallory');
    assert.equal((await refused({ protocol: 1, session: sa, token: mallorys })).code, 'session_taken');

    // Nothing changed: no event, ada's session on the same connection.
    assert.deepEqual(await events(), eventsBefore);
    const adaAfter = await sessions('ada');
    assert.deepEqual(adaAfter.map((s) => [s.session, s.connection, s.presence]),
      adaBefore.map((s) => [s.session, s.connection, s.presence]));

    // No token at all: a watcher, which gets the state and may send no signal.
    const watcher = io(server.url, { auth: { protocol: 1 }, transports: ['websocket'], reconnection: false, forceNew: true });
    const seen = [];
    const refusals = [];
    watcher.on('presence', (m) => seen.push(m));
    watcher.on('refused', (r) => refusals.push(r.code));
    await waitFor(() => seen.some((m) => m.type === 'state'), { what: 'a state for the watcher' });
    watcher.emit('heartbeat', { activity: 'active' });
    await waitFor(() => refusals.length === 1, { what: 'the watcher refused' });
    assert.deepEqual(refusals, ['watch_only']);
    watcher.close();

    // A signed-in client sending bad heartbeats: refused, and its session as it was.
    const mallory = io(server.url, { auth: { protocol: 1, session: 'm-1', token: mallorys }, transports: ['websocket'], reconnection: false, forceNew: true });
    const errors = [];
    mallory.on('refused', (r) => errors.push(r.code));
    await new Promise((resolve) => mallory.on('presence', (m) => m.type === 'state' && resolve()));
    const joined = (await events()).length;
    mallory.emit('heartbeat', 'dancing');
    mallory.emit('heartbeat', { mood: 'happy' });
    mallory.emit('heartbeat', 42);
    await waitFor(() => errors.length === 3, { what: 'three refusals' });
    assert.deepEqual(errors, ['bad_message', 'bad_message', 'bad_message']);
    assert.ok(mallory.connected, 'a bad heartbeat does not cost the connection');
    await sleep(300);
    assert.equal((await events()).length, joined, 'no event from bad heartbeats');
    const m = await sessions('mallory');
    assert.deepEqual(m.map((s) => [s.session, s.activity]), [['m-1', 'active']]);

    // One socket's heartbeats apply in the order sent: a flood of toggles ends on the last.
    for (let i = 0; i < 60; i++) mallory.emit('heartbeat', { activity: i % 2 ? 'idle' : 'background' });
    mallory.emit('heartbeat', { activity: 'idle' });
    await waitFor(async () => (await sessions('mallory'))[0]?.activity === 'idle', { what: 'the last heartbeat applied' });
    await sleep(300);
    assert.equal((await sessions('mallory'))[0].activity, 'idle');
    mallory.close();
  });

  it('a server restart with the pages open: no ghost, no flap', async () => {
    // A watcher page (no sign-in) in a window of its own, beside ada's tab.
    const cdp = await chrome.browser.newBrowserCDPSession();
    const [watcherPage] = await Promise.all([
      chrome.context.waitForEvent('page'),
      cdp.send('Target.createTarget', { url: `${server.url}/?${CLIENT}`, newWindow: true }),
    ]);
    await waitFor(() => watcherPage.evaluate(() => window.demo.users.get('ada')?.presence === 'active'),
      { what: 'the watcher shows ada active' });
    // gus connects from node and will not come back after the restart.
    const gus = io(server.url, { auth: { protocol: 1, session: 'g-1', token: await login(server.url, 'gus') }, transports: ['websocket'], forceNew: true });
    await waitFor(() => watcherPage.evaluate(() => window.demo.users.get('gus')?.presence === 'active'),
      { what: 'the watcher shows gus' });
    const epochBefore = await watcherPage.evaluate(() => window.demo.client.epoch);
    assert.ok(Number.isInteger(epochBefore), `an epoch: ${epochBefore}`);

    const port = new URL(server.url).port;
    gus.io.reconnection(false);
    await server.stop(); // SIGTERM: the snapshot is saved while the sockets are open
    gus.close();
    server = await startServer('socketio', THRESHOLDS, { port, extra: ['--snapshot', snapshot] });

    // ada's page reconnects by itself; the watcher resyncs on the new epoch.
    await waitFor(() => connected(tabA), { timeout: 15000, what: 'ada reconnected' });
    await waitFor(() => watcherPage.evaluate(() => window.demo.client.status === 'connected'), { what: 'the watcher reconnected' });
    await sleep(1500);
    const adaSeen = await watcherPage.evaluate(() => window.demo.history.get('ada'));
    assert.ok(!adaSeen.includes('offline'), `ada never shown offline: ${adaSeen}`);
    assert.equal((await watcherPage.evaluate(() => window.demo.users.get('ada')?.presence)), 'active');
    // gus was restored, did not come back, and decays like any silent session: no ghost.
    await waitFor(() => watcherPage.evaluate(() => window.demo.users.get('gus')?.presence === 'offline'),
      { timeout: THRESHOLDS['ttl-ms'] + 5000, what: 'gus offline on the watcher page' });
    assert.equal((await getJson(`${server.url}/api/presence`)).users.find((u) => u.user === 'gus'), undefined);
    assert.notEqual(await watcherPage.evaluate(() => window.demo.client.epoch), epochBefore, 'a new epoch');
    await watcherPage.close();
  });
});
