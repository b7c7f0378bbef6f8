// Rooms in a real Chromium: the socketio example's demo page (documents), with the browser
// client from assets/, thresholds scaled down (THRESHOLDS in lib.mjs). Asserts on the rooms as
// the server publishes them (/api/rooms/<room>) and on what each page applied (its room log,
// its client's rooms, what it renders). Run by run.sh; alone: `node --test rooms.test.mjs`
// after `cargo build --example socketio`.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { getJson, login, sleep, startBrowser, startServer, THRESHOLDS, waitFor } from './lib.mjs';

const CLIENT = 'heartbeat=300&hidden=1500&idle=600000&reconnect=300&reconnectMax=1000';
const DESIGN = 'doc-design';
const ROADMAP = 'doc-roadmap';

describe('rooms (documents) in Chromium over Socket.IO', { timeout: 120_000 }, () => {
  let server;
  let chrome;
  let tabA; // ada, in the design notes
  let tabB; // ada's second tab, in the roadmap
  let bob; // bob, who comes later to the design notes

  const pageUrl = (user, doc) => `${server.url}/?user=${user}&doc=${doc}&${CLIENT}`;
  const room = (id) => getJson(`${server.url}/api/rooms/${id}`);
  /// A tab's session as room states show it: the handle its `welcome` gave.
  const sessionOf = async (page) => {
    await waitFor(() => page.evaluate(() => window.demo.client.member !== window.demo.client.sessionId),
      { what: 'the welcome' });
    return page.evaluate(() => window.demo.client.member);
  };
  const connected = (page) => page.evaluate(() => window.demo?.client?.status === 'connected');
  /// What a page holds of a room: user -> [[session, section], ...].
  const held = (page, id) => page.evaluate((id) => {
    const view = window.demo.client.rooms.get(id);
    if (!view || view.epoch === null) return null;
    return Object.fromEntries([...view.members.values()].map((m) =>
      [m.user, m.sessions.map((s) => [s.session, s.meta?.section ?? null])]).sort(([a], [b]) => a.localeCompare(b)));
  }, id);
  /// The same, as the server publishes it.
  const published = async (id) => Object.fromEntries((await room(id)).members.map((m) =>
    [m.user, m.sessions.map((s) => [s.session, s.meta?.section ?? null])]).sort(([a], [b]) => a.localeCompare(b)));
  const log = (page, id) => page.evaluate((id) => window.demo.roomLog.filter((e) => e.room === id), id);
  const newWindow = async (url) => {
    const cdp = await chrome.browser.newBrowserCDPSession();
    const [page] = await Promise.all([
      chrome.context.waitForEvent('page'),
      cdp.send('Target.createTarget', { url, newWindow: true }),
    ]);
    return page;
  };

  before(async () => {
    // Rooms of more than 30 members are big: counted, and listed in windows.
    server = await startServer('socketio', THRESHOLDS, { extra: ['--big-room', '30'] });
    chrome = await startBrowser();
  });

  after(async () => {
    await chrome?.close();
    await server?.stop();
  });

  it('one user in two rooms with two tabs: each room shows the tab that is in it', async () => {
    tabA = chrome.context.pages()[0];
    await tabA.goto(pageUrl('ada', DESIGN));
    await waitFor(() => connected(tabA), { what: 'tab A connected' });
    tabB = await newWindow(pageUrl('ada', ROADMAP));
    await waitFor(() => connected(tabB), { what: 'tab B connected' });
    const [sa, sb] = [await sessionOf(tabA), await sessionOf(tabB)];
    assert.notEqual(sa, sb);

    await waitFor(async () => JSON.stringify(await published(DESIGN)) === JSON.stringify({ ada: [[sa, 1]] }),
      { what: 'ada in the design notes with tab A' });
    await waitFor(async () => JSON.stringify(await published(ROADMAP)) === JSON.stringify({ ada: [[sb, 1]] }),
      { what: 'ada in the roadmap with tab B' });
    const design = await room(DESIGN);
    assert.equal(design.members[0].presence, 'active');
    assert.deepEqual(design.members[0].sessions[0].meta, { name: 'ada', color: design.members[0].sessions[0].meta.color, section: 1 });

    // Each page watches every document: both see ada in both, each with the right tab.
    for (const page of [tabA, tabB]) {
      await waitFor(async () => JSON.stringify(await held(page, DESIGN)) === JSON.stringify({ ada: [[sa, 1]] }),
        { what: 'the design notes on a page' });
      await waitFor(async () => JSON.stringify(await held(page, ROADMAP)) === JSON.stringify({ ada: [[sb, 1]] }),
        { what: 'the roadmap on a page' });
    }
    // The page renders its document with its own tab marked.
    await waitFor(() => tabA.evaluate(() => document.querySelector('#members li[data-user="ada"] .tabs')
      ?.textContent.includes('editing §1 (this tab)')), { what: 'tab A renders itself in the design notes' });
    const rows = await tabB.evaluate(() => [...document.querySelectorAll('#docs tr')].map((r) => [r.dataset.doc, r.dataset.members]));
    assert.deepEqual(rows, [['doc-design', 'ada'], ['doc-roadmap', 'ada'], ['doc-budget', '']]);
  });

  it('a late joiner gets the room state with every member and its metadata', async () => {
    bob = await newWindow(pageUrl('bob', DESIGN));
    await waitFor(() => connected(bob), { what: 'bob connected' });
    const sa = await sessionOf(tabA);
    const sbob = await sessionOf(bob);
    await waitFor(async () => JSON.stringify(await held(bob, DESIGN)) === JSON.stringify({ ada: [[sa, 1]], bob: [[sbob, 1]] }),
      { what: 'bob holds ada and himself' });
    const first = (await log(bob, DESIGN))[0];
    assert.equal(first.kind, 'state', 'a room starts with its state');
    await waitFor(() => bob.evaluate(() => document.querySelector('#members li[data-user="ada"] .tabs')
      ?.textContent === 'ada: editing §1'), { what: 'bob renders ada editing §1' });
    // ada's page got bob's arrival as one update.
    await waitFor(async () => (await log(tabA, DESIGN)).some((e) => e.user === 'bob' && e.change === 'joined'),
      { what: 'tab A told bob joined' });
    assert.deepEqual(await held(tabA, DESIGN), await published(DESIGN));
  });

  it('a metadata update is one event on the other pages', async () => {
    const before = { bob: (await log(bob, DESIGN)).length, tabB: (await log(tabB, DESIGN)).length };
    await tabA.evaluate(() => window.demo.editSection(3));
    await waitFor(async () => (await held(bob, DESIGN))?.ada?.[0]?.[1] === 3, { what: 'bob sees ada editing §3' });
    await waitFor(async () => (await held(tabB, DESIGN))?.ada?.[0]?.[1] === 3, { what: 'tab B sees it too' });
    await sleep(500); // anything else would have come by now
    for (const [name, page] of [['bob', bob], ['tabB', tabB]]) {
      const entries = (await log(page, DESIGN)).slice(before[name]);
      assert.deepEqual(entries.map((e) => [e.kind, e.user, e.change, e.sections]),
        [['update', 'ada', 'updated', [3]]], `${name}: one update, no leave and join`);
    }
    await waitFor(() => bob.evaluate(() => document.querySelector('#members li[data-user="ada"] .tabs')
      ?.textContent === 'ada: editing §3'), { what: 'bob renders it' });
    assert.deepEqual(await published(DESIGN), await held(bob, DESIGN));
  });

  it('a dropped update is recovered by version: the next one shows the gap, the page resyncs', async () => {
    const stats = () => bob.evaluate(() => ({ ...window.demo.client.stats }));
    const before = await stats();
    await bob.evaluate((id) => window.demo.client.test.dropNext(id), DESIGN);
    await tabA.evaluate(() => window.demo.editSection(2));
    await waitFor(async () => (await stats()).dropped === before.dropped + 1, { what: 'bob dropped the update' });
    await waitFor(async () => (await published(DESIGN)).ada[0][1] === 2, { what: 'the server has §2' });
    assert.equal((await held(bob, DESIGN)).ada[0][1], 3, 'bob missed it: still §3');

    await sleep(150); // past the metadata interval
    await tabA.evaluate(() => window.demo.editSection(4));
    await waitFor(async () => (await held(bob, DESIGN))?.ada?.[0]?.[1] === 4, { what: 'bob back in sync at §4' });
    const after = await stats();
    assert.equal(after.roomResyncs, before.roomResyncs + 1, 'one room_resync for the gap');
    assert.equal(after.roomStates, before.roomStates + 1, 'answered with the room state');
    const version = (await room(DESIGN)).version;
    assert.equal(await bob.evaluate((id) => window.demo.client.rooms.get(id).version, DESIGN), version);
    assert.deepEqual(await held(bob, DESIGN), await published(DESIGN));
  });

  it('a reload of a tab in a room shows the others nothing', async () => {
    const sa = await sessionOf(tabA);
    const before = { log: (await log(bob, DESIGN)).length, version: (await room(DESIGN)).version };
    await tabA.reload();
    await waitFor(() => connected(tabA), { what: 'tab A back' });
    assert.equal(await sessionOf(tabA), sa);
    await sleep(THRESHOLDS['leave-grace-ms'] + 500);
    // The reloaded page opened its document again in its hello, with the same metadata (the
    // page keeps its section for the tab): no leave, no join, no update.
    assert.deepEqual((await log(bob, DESIGN)).slice(before.log), [], 'bob saw nothing');
    assert.equal((await room(DESIGN)).version, before.version);
    assert.deepEqual((await published(DESIGN)).ada, [[sa, 4]]);
    assert.equal((await held(tabA, DESIGN)).ada[0][1], 4, 'the page shows its tab at §4 again');
  });

  it('the second tab closed: ada leaves the roadmap and stays in the design notes', async () => {
    const sa = await sessionOf(tabA);
    await tabB.close();
    await waitFor(async () => (await room(ROADMAP)).members.length === 0,
      { timeout: THRESHOLDS['leave-grace-ms'] + 5000, what: 'the roadmap empty' });
    await waitFor(async () => (await held(bob, ROADMAP)) && Object.keys(await held(bob, ROADMAP)).length === 0,
      { what: 'bob sees the roadmap empty' });
    assert.deepEqual((await published(DESIGN)).ada, [[sa, 4]]);
    const rows = await bob.evaluate(() => [...document.querySelectorAll('#docs tr')].map((r) => r.dataset.members));
    assert.deepEqual(rows, ['ada,bob', '', '']);
  });

  it("a page that watches a room's occupancy holds its counts, never its members", async () => {
    const CROWD = 'doc-crowd';
    await bob.evaluate((room) => {
      window.occupancyLog = [];
      window.demo.client.watch(room, (view, change) => {
        if (change.kind === 'occupancy') window.occupancyLog.push(change.occupancy);
      }, { view: 'occupancy' });
    }, CROWD);
    await waitFor(async () => (await bob.evaluate(() => window.occupancyLog.length)) >= 1,
      { what: 'the first occupancy' });
    const N = 40;
    const tokens = await Promise.all(Array.from({ length: N }, (_, i) => login(server.url, `crowd-${i}`)));
    const sockets = tokens.map((token, i) => io(server.url, {
      auth: { protocol: 1, session: `crowd-s-${i}`, token, rooms: [{ room: CROWD, meta: { n: i } }] },
      transports: ['websocket'], forceNew: true, reconnection: false,
    }));
    try {
      // Online in any presence: the crowd sends no heartbeat, so the first of them may be idle
      // (1 s here) before the last one joins.
      const online = (c) => (c?.active ?? 0) + (c?.idle ?? 0) + (c?.away ?? 0) + (c?.stale ?? 0);
      const present = () => bob.evaluate((room) => {
        const c = window.demo.client.rooms.get(room)?.occupancy?.users;
        return c ? c.active + c.idle + c.away + c.stale : 0;
      }, CROWD);
      await waitFor(async () => (await present()) === N, { what: `${N} in the crowd` });
      const view = await bob.evaluate((room) => {
        const v = window.demo.client.rooms.get(room);
        return { members: v.members.size, sessions: v.occupancy.sessions };
      }, CROWD);
      view.sessions = online(view.sessions);
      assert.equal(view.members, 0, 'no member is sent');
      assert.equal(view.sessions, N);
      const messages = await bob.evaluate(() => window.occupancyLog.length);
      assert.ok(messages < N / 2, `${N} joins: ${messages} occupancy messages`);
    } finally {
      for (const socket of sockets) socket.close();
    }
  });

  it('a big room is counted to a page that watches its members and listed to one that asks for a window', async () => {
    const HALL = 'doc-hall';
    const window5 = (page) => page.evaluate((room) => {
      const w = window.demo.client.rooms.get(room)?.window;
      return w ? { users: w.members.map((m) => m.user), keys: w.members.map((m) => m.key), more: w.more } : null;
    }, HALL);
    const counted = () => bob.evaluate((room) => {
      const v = window.demo.client.rooms.get(room);
      return v ? { big: v.big, members: v.members.size, active: v.occupancy?.users?.active ?? 0 } : null;
    }, HALL);
    await bob.evaluate((room) => {
      window.hallLog = [];
      window.demo.client.watch(room, (view, change) => window.hallLog.push(change.kind));
    }, HALL);
    await tabA.evaluate((room) => window.demo.client.watch(room, null, { view: 'window', limit: 5 }), HALL);
    const N = 40;
    const tokens = await Promise.all(Array.from({ length: N }, (_, i) => login(server.url, `hall-${i}`)));
    const sockets = tokens.map((token, i) => io(server.url, {
      auth: { protocol: 1, session: `hall-s-${i}`, token, rooms: [{ room: HALL, meta: { n: i } }] },
      transports: ['websocket'], forceNew: true, reconnection: false,
    }));
    // They stay active (the scaled-down thresholds would make them idle, then offline).
    const beat = setInterval(() => { for (const s of sockets) s.emit('heartbeat', { activity: 'active' }); }, 300);
    try {
      await waitFor(async () => JSON.stringify(await counted()) === JSON.stringify({ big: true, members: 0, active: N }),
        { what: `bob counts ${N} in the hall and lists nobody` });
      await waitFor(async () => (await window5(tabA))?.users.length === 5, { what: 'a window of 5' });
      const first = await window5(tabA);
      assert.equal(first.more, true);
      assert.deepEqual([...first.keys].sort((a, b) => a - b), first.keys, 'by increasing key');
      // The next page, after the last key: five others.
      const last = first.keys[4];
      await tabA.evaluate(([room, after]) => window.demo.client.watch(room, null, { view: 'window', limit: 5, after }), [HALL, last]);
      await waitFor(async () => (await window5(tabA))?.keys[0] > last, { what: 'the next page' });
      const next = await window5(tabA);
      assert.equal(next.users.filter((u) => first.users.includes(u)).length, 0, 'another five');
      // Twenty leave the room: twenty stay, under three quarters of the bound: listed again.
      for (const socket of sockets.slice(0, 20)) socket.emit('leave_room', { room: HALL });
      await waitFor(async () => {
        const c = await counted();
        return !c.big && c.members === 20;
      }, { what: 'bob lists the twenty' });
      const kinds = await bob.evaluate(() => window.hallLog);
      assert.ok(kinds.includes('occupancy') && kinds.at(-1) !== 'occupancy', kinds.join(','));
    } finally {
      clearInterval(beat);
      for (const socket of sockets) socket.close();
    }
  });
});
