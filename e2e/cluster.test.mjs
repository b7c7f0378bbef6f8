// Two nodes of one cluster: the socketio example twice, with `--redis` on the redis-server that
// run.sh starts (PRESENCE_E2E_REDIS), thresholds scaled down (THRESHOLDS) and a 1.5 s lease.
// In Chromium: tabs on both nodes show the same users and rooms; a rolling restart of a node
// (SIGTERM, then started again) shows observers nothing while its tabs move to the other node
// or come back to it; a node killed with SIGKILL: its tabs that know the other node move there
// without a flap, the others go offline on the other node within the stated bound. Then
// scripted socket.io-client clients on both nodes, each keeping the users and a room by the
// protocol's rules and counting what it received; and sockets whose session the cluster
// refuses (another user's id, a duplicated tab on the other node). Run by run.sh.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { getJson, HeldRoom, login, shownOf, sleep, startBrowser, startServer, THRESHOLDS, waitFor } from './lib.mjs';

const REDIS = process.env.PRESENCE_E2E_REDIS;
const LEASE_MS = 1500;
// As the node states it (ClusterConfig::offline_bound): lease + disconnect grace + two reap
// intervals (a fifth of the lease each, here).
const BOUND_MS = LEASE_MS + THRESHOLDS['disconnect-grace-ms'] + 2 * (LEASE_MS / 5);
// Scheduling on a loaded 2-core machine, and the observer page's own delivery.
const SLACK_MS = 2500;
const CLIENT = 'heartbeat=300&hidden=1500&idle=600000&reconnect=300&reconnectMax=1000';

describe('two nodes of one cluster', { timeout: 240_000, skip: !REDIS && 'PRESENCE_E2E_REDIS is not set (run.sh sets it)' }, () => {
  // Keys of this run only: a Redis shared with other runs shows them nothing.
  const prefix = `e2e${process.pid}x${Date.now() % 100000}`;
  const extra = ['--redis', REDIS, '--redis-prefix', prefix, '--lease-ms', String(LEASE_MS)];
  let a;
  let b;
  let portA;
  let chrome;
  let cdp;
  const pages = {};

  const page = async (url) => {
    const [p] = await Promise.all([
      chrome.context.waitForEvent('page'),
      cdp.send('Target.createTarget', { url, newWindow: true }), // each visible: active
    ]);
    return p;
  };
  const tab = (server, user, nodes) =>
    `${server.url}/?user=${user}&${CLIENT}${nodes ? `&nodes=${nodes.map((s) => s.url).join(',')}` : ''}`;
  const watcher = (server) => `${server.url}/?${CLIENT}`;
  const shown = (p, user) => p.evaluate((u) => {
    const x = window.demo.users.get(u);
    return x ? [x.presence, x.sessions] : ['offline', 0];
  }, user);
  const history = (p, user) => p.evaluate((u) => window.demo.history.get(u) || [], user);
  const connected = (p) => p.evaluate(() => window.demo?.client?.status === 'connected');
  const presenceOf = async (server) => (await getJson(`${server.url}/api/presence`)).users
    .map((u) => [u.user, u.presence, u.sessions]).sort((x, y) => x[0].localeCompare(y[0]));

  before(async () => {
    a = await startServer('socketio', THRESHOLDS, { extra });
    b = await startServer('socketio', THRESHOLDS, { extra });
    portA = new URL(a.url).port;
    chrome = await startBrowser();
    cdp = await chrome.browser.newBrowserCDPSession();
  });

  after(async () => {
    await chrome?.close();
    await a?.stop();
    await b?.stop();
  });

  it('tabs on both nodes: every page shows the same users and rooms', async () => {
    pages.adaA = await page(`${tab(a, 'ada')}&doc=doc-design`);
    pages.bobB = await page(`${tab(b, 'bob')}&doc=doc-design`);
    pages.adaB = await page(tab(b, 'ada')); // ada's second tab, on the other node
    pages.obsA = await page(watcher(a));
    pages.obsB = await page(watcher(b));
    for (const p of Object.values(pages)) await waitFor(() => connected(p), { what: 'a page connected' });
    for (const [name, p] of Object.entries(pages)) {
      await waitFor(async () => {
        const [ada, bob] = [await shown(p, 'ada'), await shown(p, 'bob')];
        return ada[0] === 'active' && ada[1] === 2 && bob[0] === 'active' && bob[1] === 1;
      }, { what: `${name} showing ada on 2 tabs and bob` });
    }
    const both = await waitFor(async () => {
      const [pa, pb] = [await presenceOf(a), await presenceOf(b)];
      return JSON.stringify(pa) === JSON.stringify(pb) && pa;
    }, { what: 'both nodes publishing the same users' });
    assert.deepEqual(both, [['ada', 'active', 2], ['bob', 'active', 1]]);
    // The room: the same members, at the cluster's epoch and version, on both nodes.
    const doc = await waitFor(async () => {
      const [ra, rb] = [await getJson(`${a.url}/api/rooms/doc-design`), await getJson(`${b.url}/api/rooms/doc-design`)];
      return ra.members.length === 2 && ra.epoch === rb.epoch && ra.version === rb.version && ra;
    }, { what: 'doc-design with ada and bob, one epoch and version on both nodes' });
    assert.deepEqual(doc.members.map((m) => m.user).sort(), ['ada', 'bob']);
    for (const p of [pages.obsA, pages.obsB]) {
      await waitFor(() => p.evaluate(() => document.querySelector('tr[data-doc="doc-design"]')?.dataset.members === 'ada,bob'),
        { what: 'the watchers\' document list showing ada and bob in Design notes' });
    }
  });

  it('a rolling restart of a node: its tabs move or come back, observers see nothing', async () => {
    pages.carolA = await page(tab(a, 'carol', [a, b])); // knows both nodes: will move
    pages.daveA = await page(tab(a, 'dave')); // knows node a only: will come back to it
    for (const user of ['carol', 'dave']) {
      await waitFor(async () => (await shown(pages.obsB, user))[0] === 'active', { what: `${user} on b's watcher` });
    }
    const before = {};
    for (const user of ['ada', 'carol', 'dave']) before[user] = await history(pages.obsB, user);

    await a.stop(); // SIGTERM: the node hands its sessions off with the grace
    await waitFor(() => pages.carolA.evaluate((url) => window.demo.client.status === 'connected' && window.demo.client.node === url, b.url),
      { timeout: 10000, what: 'carol\'s tab moved to node b' });
    a = await startServer('socketio', THRESHOLDS, { port: portA, extra });
    await waitFor(() => connected(pages.daveA), { timeout: 15000, what: 'dave back on node a' });
    await waitFor(() => connected(pages.adaA), { timeout: 15000, what: 'ada\'s first tab back on node a' });
    // Past the grace the handoff gave the sessions: what was not claimed again would be gone.
    await sleep(THRESHOLDS['disconnect-grace-ms'] + 1000);
    for (const user of ['ada', 'carol', 'dave']) {
      assert.deepEqual(await history(pages.obsB, user), before[user], `${user}: nothing shown on b's watcher`);
    }
    assert.deepEqual(await shown(pages.obsB, 'ada'), ['active', 2]);
    assert.deepEqual(await shown(pages.obsB, 'carol'), ['active', 1]);
    assert.deepEqual(await shown(pages.obsB, 'dave'), ['active', 1]);
    const events = await getJson(`${b.url}/api/events`);
    const since = events.filter((e) => ['carol', 'dave'].includes(e.user) && e.to !== 'active');
    assert.deepEqual(since, [], 'b published no change of carol or dave');
  });

  it('a node killed: its tabs that know the other node move there, the others go offline within the bound', async () => {
    pages.erinA = await page(tab(a, 'erin', [a, b]));
    await waitFor(async () => (await shown(pages.obsB, 'erin'))[0] === 'active', { what: 'erin on b\'s watcher' });
    const ada = await history(pages.obsB, 'ada');
    const erin = await history(pages.obsB, 'erin');

    a.kill(); // SIGKILL: no handoff, no more renewals
    const killed = Date.now();
    await waitFor(() => pages.erinA.evaluate((url) => window.demo.client.status === 'connected' && window.demo.client.node === url, b.url),
      { timeout: 10000, what: 'erin\'s tab moved to node b' });
    await waitFor(async () => (await shown(pages.obsB, 'dave'))[0] === 'offline',
      { timeout: BOUND_MS + SLACK_MS, interval: 50, what: 'dave offline on b\'s watcher' });
    const took = Date.now() - killed;
    console.log(`# SIGKILL to offline on the other node's page: ${took} ms (bound ${BOUND_MS} ms)`);
    assert.ok(took >= LEASE_MS, `not before the lease lapsed: ${took} ms`);
    // Ada's first tab went with node a: one tab less, never offline; erin never flapped.
    await waitFor(async () => (await shown(pages.obsB, 'ada'))[1] === 1, { what: 'ada down to 1 tab' });
    assert.deepEqual(await history(pages.obsB, 'ada'), ada, 'ada: no presence change');
    assert.deepEqual(await history(pages.obsB, 'erin'), erin, 'erin: nothing shown');
    assert.deepEqual(await shown(pages.obsB, 'erin'), ['active', 1]);
    assert.deepEqual((await history(pages.obsB, 'dave')).slice(-2), ['active', 'offline']);
    const events = (await getJson(`${b.url}/api/events`)).filter((e) => e.user === 'dave');
    assert.deepEqual(events.map((e) => `${e.from}>${e.to}`), ['offline>active', 'active>offline'],
      'dave: came online once, went offline once');
    await chrome.close();
    chrome = null;
  });

  it('scripted clients on both nodes hold what their node publishes, and the nodes agree', async () => {
    a = await startServer('socketio', THRESHOLDS, { port: portA, extra });
    const nodes = [a, b];
    const clients = [];
    const PER_NODE = 10;
    for (let i = 0; i < 2 * PER_NODE; i++) {
      const node = nodes[i % 2];
      const user = `s${i}`;
      const auth = {
        protocol: 1, session: `s${i}-tab`, token: await login(node.url, user),
        rooms: [{ room: 'burst', meta: { n: 0 } }],
      };
      const socket = io(node.url, { auth, transports: ['websocket'], forceNew: true, reconnection: false });
      const c = { i, user, node, socket, users: new Users(() => socket.emit('resync')), room: new HeldRoom('burst', () => socket.emit('room_resync', { room: 'burst' })), refusals: [] };
      socket.on('presence', (m) => (m.type.startsWith('room_') ? c.room.apply(m) : c.users.apply(m)));
      socket.on('refused', (r) => c.refusals.push(r.code));
      clients.push(c);
    }
    await waitFor(() => clients.every((c) => c.socket.connected), { what: 'every scripted client connected' });
    await waitFor(() => clients.every((c) => c.users.size() >= 2 * PER_NODE && c.room.members.size === 2 * PER_NODE),
      { timeout: 15000, what: 'every client holding every scripted user and the room' });
    // Churn: a quarter leave (a clean close), the others change their metadata a few times.
    const leaving = clients.filter((c) => c.i % 4 === 0);
    const staying = clients.filter((c) => c.i % 4 !== 0);
    for (const c of leaving) c.socket.close();
    for (let round = 1; round <= 3; round++) {
      for (const c of staying) c.socket.emit('update', { room: 'burst', meta: { n: round } });
      await sleep(120); // past the 50 ms metadata bound
    }
    const expected = staying.map((c) => c.user).sort();
    const scripted = (users) => users.filter((u) => /^s\d+$/.test(u)).sort();
    await waitFor(async () => {
      const [pa, pb] = [await getJson(`${a.url}/api/presence`), await getJson(`${b.url}/api/presence`)];
      const [ra, rb] = [await getJson(`${a.url}/api/rooms/burst`), await getJson(`${b.url}/api/rooms/burst`)];
      const users = { [a.url]: pa.users.map((u) => u.user).sort(), [b.url]: pb.users.map((u) => u.user).sort() };
      const room = (r) => JSON.stringify(shownOf(r));
      return JSON.stringify(scripted(users[a.url])) === JSON.stringify(expected)
        && JSON.stringify(users[a.url]) === JSON.stringify(users[b.url])
        && ra.epoch === rb.epoch && ra.version === rb.version && room(ra) === room(rb)
        && ra.members.every((m) => m.sessions.every((s) => s.meta.n === 3))
        && staying.every((c) => JSON.stringify(c.users.names()) === JSON.stringify(users[c.node.url])
          && c.room.epoch === ra.epoch && c.room.version === ra.version && JSON.stringify(c.room.shown()) === room(ra));
    }, { timeout: THRESHOLDS['leave-grace-ms'] + 15000, interval: 200, what: 'the clients, their nodes and both nodes agreeing' });

    for (const c of staying) {
      const [u, r] = [c.users.count, c.room.count];
      console.log(`# node ${c.node === a ? 'a' : 'b'}, ${c.user}: users ${u.states} state + ${u.updates} updates `
        + `(${u.versions} versions; gaps ${u.gaps}, epochs ${u.epochs}); room ${r.states} state(s) + ${r.updates} updates `
        + `(${r.versions} versions; gaps ${r.gaps}, epochs ${r.epochs})`);
      assert.equal(u.states, 1, `${c.user}: one state, never a resync`);
      assert.equal(u.gaps + u.epochs, 0, `${c.user}: no version skipped, one epoch`);
      assert.equal(r.gaps + r.epochs, 0, `${c.user}: no room version skipped, one history`);
      assert.ok(u.updates <= u.versions && r.updates <= r.versions, `${c.user}: gathered, never more messages than versions`);
      assert.deepEqual(c.refusals.filter((x) => x !== 'metadata_too_frequent'), [], `${c.user}: nothing refused`);
    }
    for (const c of staying) c.socket.close();
  });

  it('a session the cluster refuses: its socket is told why and disconnected', async () => {
    const connect = async (node, user, session) => {
      const socket = io(node.url, {
        auth: { protocol: 1, session, token: await login(node.url, user) },
        transports: ['websocket'], forceNew: true, reconnection: false,
      });
      const c = { socket, refusals: [], reason: null, states: 0 };
      socket.on('refused', (r) => c.refusals.push(r.code));
      socket.on('disconnect', (reason) => { c.reason = reason; });
      socket.on('presence', (m) => { if (m.type === 'state') c.states += 1; });
      // A refused session may be disconnected before its first state arrives (the cluster's
      // answer can beat the node's first message under load): either ends the wait.
      await waitFor(() => c.states > 0 || c.reason !== null, { what: `${user} connected to ${node.url}` });
      return c;
    };
    // Another user's session id, on the other node: accepted by that node's tracker, refused by
    // the cluster, and nobody is shown it.
    const owner = await connect(a, 'xena', 'dup-tab');
    assert.equal(owner.reason, null, 'the first claim of the session is accepted');
    await waitFor(async () => (await presenceOf(b)).some(([u]) => u === 'xena'), { what: 'xena on node b' });
    const thief = await connect(b, 'yuri', 'dup-tab');
    await waitFor(() => thief.reason !== null, { what: 'yuri\'s socket disconnected' });
    assert.deepEqual(thief.refusals, ['session_taken']);
    assert.equal(thief.reason, 'io server disconnect', 'the server ended it: socket.io-client does not retry');
    for (const node of [a, b]) assert.ok(!(await presenceOf(node)).some(([u]) => u === 'yuri'), 'yuri shown nowhere');
    // The same session opened on node b by its own user (a duplicated tab), once node b's
    // tracker has let yuri's refused session go (its clean disconnect's grace): b claims it,
    // newer; node a's socket is refused at its next write (its tab hides), and xena never flaps.
    await sleep(THRESHOLDS['leave-grace-ms'] + 1000);
    const copy = await connect(b, 'xena', 'dup-tab');
    assert.equal(copy.reason, null, 'the same user\'s newer claim is accepted');
    await sleep(300); // b's claim written
    owner.socket.emit('heartbeat', { activity: 'background' });
    await waitFor(() => owner.reason !== null, { what: 'the older socket disconnected' });
    assert.deepEqual(owner.refusals, ['session_superseded']);
    assert.equal(owner.reason, 'io server disconnect');
    assert.ok(copy.socket.connected, 'the newer socket stays');
    // (These scripted clients send no heartbeats: xena decays, scaled down, but never goes.)
    const events = (await getJson(`${b.url}/api/events`)).filter((e) => e.user === 'xena');
    assert.equal(events[0] && `${events[0].from}>${events[0].to}`, 'offline>active');
    assert.equal(events.filter((e) => e.to === 'offline' || e.from === 'offline').length, 1,
      `xena: online once, never offline: ${events.map((e) => `${e.from}>${e.to}`)}`);
    copy.socket.close();
  });
});

/// The online users a client holds by the protocol's resync rule, and what it counted.
class Users {
  constructor(resync) {
    this.resync = resync;
    this.epoch = null;
    this.version = null;
    this.users = new Map();
    this.resyncing = false;
    this.count = { states: 0, updates: 0, versions: 0, gaps: 0, epochs: 0 };
  }

  apply(m) {
    if (m.type === 'welcome') return; // this socket's session handle: not a user message
    if (m.type === 'state') {
      this.count.states += 1;
      this.epoch = m.epoch;
      this.version = m.version;
      this.users = new Map(m.users.map((u) => [u.user, u]));
      this.resyncing = false;
      return;
    }
    this.count.updates += 1;
    if (this.resyncing || this.epoch === null) return;
    if (m.epoch !== this.epoch || m.from !== this.version + 1) {
      if (m.epoch !== this.epoch) this.count.epochs += 1;
      else this.count.gaps += 1;
      this.resyncing = true;
      this.resync();
      return;
    }
    this.version = m.to;
    this.count.versions += m.to - m.from + 1;
    for (const u of m.users) {
      const held = this.users.get(u.user);
      if (held && u.seq <= held.seq) continue;
      if (u.presence === 'offline') this.users.delete(u.user);
      else this.users.set(u.user, u);
    }
  }

  size() {
    return this.users.size;
  }

  names() {
    return [...this.users.keys()].sort();
  }
}
