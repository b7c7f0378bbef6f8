// Helpers for the end-to-end tests: start an example server, start Chromium, poll the server.
//
// Chromium is started by hand (not by Playwright's launcher) with exactly the flags below and
// then attached over CDP with `noDefaults`: Playwright's own launch and its default "focus
// emulation" keep every page `visible`, which would make the hidden-tab test meaningless.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

export { sleep };

/// Where `cargo build --example ...` put the binaries (run.sh exports PRESENCE_EXAMPLES_DIR).
export const examplesDir = process.env.PRESENCE_EXAMPLES_DIR
  ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(here, '..', 'target'), 'debug', 'examples');

/// Thresholds scaled down so the whole lifecycle fits in seconds. Stale (age >= away) must come
/// well before a lost connection's grace runs out (Chromium closes the socket when the network
/// goes, so the server sees a lost disconnect within a second: stale at 4 s, offline at ~6 s).
export const THRESHOLDS = {
  'active-ms': 1000,
  'idle-ms': 2000,
  'away-ms': 4000,
  'ttl-ms': 8000,
  'disconnect-grace-ms': 6000,
  'leave-grace-ms': 2000,
  'ping-interval-ms': 1000,
  'ping-timeout-ms': 1000,
};

/// Starts `examples/<name>` on a free port (or `port`); resolves once it prints its URL.
/// `extra` are more flags, e.g. `['--snapshot', file]`.
export async function startServer(name, thresholds = THRESHOLDS, { port = 0, extra = [] } = {}) {
  const bin = path.join(examplesDir, name);
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build --example ${name}\``);
  const args = ['--port', String(port), ...extra];
  // The demo's public signing key: these servers listen on 127.0.0.1 for the tests only.
  if (!extra.includes('--secret')) args.push('--dev');
  for (const [flag, value] of Object.entries(thresholds)) args.push('--' + flag, String(value));
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr.on('data', (d) => { output += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${output}`)), 15000);
    child.stdout.on('data', (d) => {
      output += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${name} exited (${code}): ${output}`)); });
  });
  return {
    url,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(3000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
    /// SIGKILL: no handoff, no goodbye (a crash).
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/// Starts Chromium with a fresh profile and attaches Playwright to it.
export async function startBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'presence-e2e-'));
  const child = spawn(CHROMIUM, [...CHROMIUM_ARGS, `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  const endpoint = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chromium did not start: ${stderr}`)), 30000);
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`chromium exited (${code}): ${stderr}`)); });
  });
  const browser = await chromium.connectOverCDP(endpoint, { noDefaults: true, isLocal: true });
  const context = browser.contexts()[0];
  return {
    browser,
    context,
    async close() {
      await browser.close().catch(() => {});
      try { process.kill(-child.pid, 'SIGKILL'); } catch (_) {}
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

/// Polls `probe` until it returns a truthy value; returns that value.
export async function waitFor(probe, { timeout = 10000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${JSON.stringify(last?.message ?? last)}`);
    await sleep(interval);
  }
}

/// The presence changes of `user` in a list from /api/events, as `from>to` strings (updates that
/// only changed the tab count are left out).
export function transitions(events, user) {
  return events.filter((e) => e.user === user && e.from !== e.to).map((e) => `${e.from}>${e.to}`);
}

/// Signs `user` in at the demo server; its token.
export async function login(url, user) {
  const response = await fetch(`${url}/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  if (!response.ok) throw new Error(`login ${user}: ${response.status} ${await response.text()}`);
  return (await response.json()).token;
}

/// `user`'s own sessions, as the server shows them to their owner only.
export async function sessionsOf(url, user) {
  const response = await fetch(`${url}/api/sessions`, {
    headers: { authorization: `Bearer ${await login(url, user)}` },
  });
  if (!response.ok) throw new Error(`sessions of ${user}: ${response.status} ${await response.text()}`);
  return response.json();
}

/// One room as a scripted client holds it, by the wire's rule for rooms (a state replaces it; an
/// update applies if it follows on; a gap or another epoch asks for the state again through
/// `resync`), and what it counted: states, updates, versions applied or skipped over, gaps,
/// epochs, stale updates (already held), foreign ones (another room's).
export class HeldRoom {
  constructor(room, resync) {
    this.room = room;
    this.resync = resync;
    this.epoch = null;
    this.version = null;
    this.members = new Map();
    this.resyncing = false;
    this.count = { states: 0, updates: 0, versions: 0, gaps: 0, epochs: 0, stale: 0, foreign: 0 };
  }

  apply(m) {
    if (m.room !== this.room) {
      this.count.foreign += 1;
      return;
    }
    if (m.type === 'room_state') {
      this.count.states += 1;
      this.epoch = m.epoch;
      this.version = m.version;
      this.members = new Map(m.members.map((x) => [x.user, x]));
      this.resyncing = false;
      return;
    }
    this.count.updates += 1;
    if (this.epoch === null || this.resyncing) return;
    if (m.epoch !== this.epoch) {
      this.count.epochs += 1;
      this.ask();
      return;
    }
    if (m.to <= this.version) {
      this.count.stale += 1;
      return;
    }
    this.count.versions += m.to - Math.max(m.from, this.version + 1) + 1;
    if (m.from > this.version + 1) {
      this.count.gaps += 1;
      this.ask();
      return;
    }
    for (const x of m.members) {
      if (x.version <= this.version) continue;
      if (x.presence === 'offline') this.members.delete(x.user);
      else this.members.set(x.user, x);
    }
    this.version = m.to;
  }

  ask() {
    this.resyncing = true;
    this.resync();
  }

  /// user -> the `n` of each session's metadata, users sorted: comparable with `shownOf`.
  shown() {
    return shownOf({ members: [...this.members.values()] });
  }
}

/// A room as the server publishes it (`GET /api/rooms/{room}`) in `HeldRoom.shown`'s form.
export const shownOf = (room) => Object.fromEntries(room.members
  .map((x) => [x.user, x.sessions.map((s) => s.meta?.n ?? null)])
  .sort(([a], [b]) => a.localeCompare(b)));
