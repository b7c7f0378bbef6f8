// The socketio example in a real Chromium, with the browser client from assets/, and thresholds
// scaled down (see THRESHOLDS in lib.mjs). Asserts on what the server broadcast (/api/events) and
// on its session view (/api/sessions?user=). Run by run.sh; alone: `node --test socketio.test.mjs`
// after `cargo build --example socketio`.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { getJson, sleep, startBrowser, startServer, transitions, waitFor } from './lib.mjs';

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
  const sessions = (user) => getJson(`${server.url}/api/sessions?user=${encodeURIComponent(user)}`);
  const userView = async (user) => (await getJson(`${server.url}/api/presence`)).users.find((u) => u.user === user);
  const sessionOf = (page) => page.evaluate(() => window.demo.client.sessionId);
  const visibility = (page) => page.evaluate(() => document.visibilityState);
  const connected = (page) => page.evaluate(() => window.demo?.client?.status === 'connected');

  before(async () => {
    server = await startServer('socketio');
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

  it('garbage from a client: an error to it, nothing changed for anyone', async () => {
    const sa = await sessionOf(tabA);
    const eventsBefore = await events();
    const adaBefore = await sessions('ada');

    // A raw socket.io-client from node; resolves with the errors it got once the server hung up.
    const refused = async (auth) => {
      const socket = io(server.url, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
      const errors = [];
      socket.on('error', (e) => errors.push(e.message));
      const reason = await new Promise((resolve) => {
        socket.on('disconnect', resolve);
        socket.on('connect_error', (e) => resolve('connect_error ' + e.message));
      });
      socket.close();
      return { errors, reason };
    };
    assert.deepEqual(await refused(undefined), { errors: ['missing session id'], reason: 'io server disconnect' });
    assert.deepEqual(await refused({ user: 'mallory' }), { errors: ['missing session id'], reason: 'io server disconnect' });
    assert.deepEqual(await refused({ session: 'm-1' }), { errors: ['missing user'], reason: 'io server disconnect' });
    const stolen = await refused({ user: 'mallory', session: sa });
    assert.equal(stolen.reason, 'io server disconnect');
    assert.equal(stolen.errors.length, 1);
    assert.match(stolen.errors[0], /belongs to another user/);

    // Nothing changed: no event, ada's session on the same connection.
    assert.deepEqual(await events(), eventsBefore);
    const adaAfter = await sessions('ada');
    assert.deepEqual(adaAfter.map((s) => [s.session, s.connection, s.presence]),
      adaBefore.map((s) => [s.session, s.connection, s.presence]));

    // A valid client sending bad heartbeats: errors, and its session as it was.
    const mallory = io(server.url, { auth: { user: 'mallory', session: 'm-1' }, transports: ['websocket'], reconnection: false, forceNew: true });
    const errors = [];
    mallory.on('error', (e) => errors.push(e.message));
    await new Promise((resolve) => mallory.on('state', resolve));
    const joined = (await events()).length;
    mallory.emit('heartbeat', 'dancing');
    mallory.emit('heartbeat', { mood: 'happy' });
    mallory.emit('heartbeat', 42);
    await waitFor(() => errors.length === 3, { what: 'three errors' });
    // Handlers of one socket's events may run concurrently: the errors can come in any order.
    assert.deepEqual([...errors].sort(),
      ['heartbeat needs an activity', 'heartbeat needs an activity', 'unknown activity "dancing"']);
    assert.ok(mallory.connected, 'a bad heartbeat does not cost the connection');
    await sleep(300);
    assert.equal((await events()).length, joined, 'no event from bad heartbeats');
    const m = await sessions('mallory');
    assert.deepEqual(m.map((s) => [s.session, s.activity]), [['m-1', 'active']]);
    mallory.close();
  });
});
