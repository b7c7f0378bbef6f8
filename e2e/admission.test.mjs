// Admission of a stampede: the socketio and websocket examples with `--admit-per-s 1
// --admit-burst 2` let two new connections in at once and one a second after that. Scripted
// clients over the rate are refused before any work (Socket.IO: a `connect_error` whose refusal
// is `busy` with `retry_after_ms`; WebSocket: the upgrade answered 503 with Retry-After), and a
// page in Chromium that is refused comes back by itself after the wait. Run by run.sh.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { io } from 'socket.io-client';
import { login, startBrowser, startServer, THRESHOLDS, waitFor } from './lib.mjs';

const CLIENT = 'heartbeat=300&hidden=1500&idle=600000&reconnect=300&reconnectMax=1000';
const ADMIT = ['--admit-per-s', '1', '--admit-burst', '2'];
// Socket.IO's two places: a 503 before the Engine.IO session, or `busy` at the namespace.
const ADMIT_HTTP = [...ADMIT, '--admit-at', 'http'];
const ADMIT_NAMESPACE = [...ADMIT, '--admit-at', 'namespace'];

describe('admission of a stampede', { timeout: 60_000 }, () => {
  let socketio;
  let socketioHttp;
  let websocket;
  let chrome;
  const sockets = [];
  before(async () => {
    socketio = await startServer('socketio', THRESHOLDS, { extra: ADMIT_NAMESPACE });
    socketioHttp = await startServer('socketio', THRESHOLDS, { extra: ADMIT_HTTP });
    websocket = await startServer('websocket', THRESHOLDS, { extra: ADMIT });
    chrome = await startBrowser();
  });
  after(async () => {
    for (const s of sockets) s.close();
    await chrome?.close();
    await socketio?.stop();
    await socketioHttp?.stop();
    await websocket?.stop();
  });

  it('Socket.IO: five at once, two or three in, the rest told to come back', async () => {
    const tokens = await Promise.all([0, 1, 2, 3, 4].map((i) => login(socketio.url, `s-${i}`)));
    const outcomes = await Promise.all(tokens.map((token, i) => new Promise((resolve) => {
      const socket = io(socketio.url, {
        auth: { protocol: 1, session: `sess-${i}`, token },
        transports: ['websocket'], forceNew: true, reconnection: false,
      });
      sockets.push(socket);
      socket.on('connect', () => resolve({ ok: true }));
      socket.on('connect_error', (e) => resolve({ ok: false, refusal: JSON.parse(e.message) }));
    })));
    const admitted = outcomes.filter((o) => o.ok).length;
    assert.ok(admitted >= 2 && admitted <= 3, `${admitted} admitted`);
    for (const o of outcomes.filter((o) => !o.ok)) {
      assert.equal(o.refusal.code, 'busy');
      assert.ok(o.refusal.retry_after_ms > 0 && o.refusal.retry_after_ms <= 1000, JSON.stringify(o.refusal));
    }
  });

  it('Socket.IO before the Engine.IO session: five at once, two or three in, the rest a 503', async () => {
    const tokens = await Promise.all([0, 1, 2, 3, 4].map((i) => login(socketioHttp.url, `h-${i}`)));
    const outcomes = await Promise.all(tokens.map((token, i) => new Promise((resolve) => {
      const socket = io(socketioHttp.url, {
        auth: { protocol: 1, session: `hsess-${i}`, token },
        transports: ['websocket'], forceNew: true, reconnection: false,
      });
      sockets.push(socket);
      socket.on('connect', () => resolve({ ok: true }));
      socket.on('connect_error', (e) => resolve({ ok: false, message: String(e.message) }));
    })));
    const admitted = outcomes.filter((o) => o.ok).length;
    assert.ok(admitted >= 2 && admitted <= 3, `${admitted} admitted: ${JSON.stringify(outcomes)}`);
    // And the refusal is HTTP's, before any Engine.IO session: a plain request shows it.
    const answers = [];
    for (let i = 0; i < 4; i += 1) {
      const response = await fetch(`${socketioHttp.url}/socket.io/?EIO=4&transport=polling`);
      answers.push([response.status, response.headers.get('retry-after')]);
      await response.arrayBuffer();
    }
    assert.ok(answers.some(([s, r]) => s === 503 && r === '1'), JSON.stringify(answers));
  });

  it('WebSocket: an upgrade over the rate gets 503 with Retry-After', async () => {
    // Upgrades one after the other: the burst comes in (101), then 503 with Retry-After.
    const { port } = new URL(websocket.url);
    const attempt = () => new Promise((resolve, reject) => {
      const request = http.get({
        host: '127.0.0.1', port, path: '/ws',
        headers: {
          connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      });
      request.on('upgrade', (response, socket) => { socket.destroy(); resolve([response.statusCode, null]); });
      request.on('response', (response) => {
        response.resume();
        resolve([response.statusCode, response.headers['retry-after'] ?? null]);
      });
      request.on('error', reject);
    });
    const outcomes = [];
    for (let i = 0; i < 4; i += 1) outcomes.push(await attempt());
    assert.deepEqual(outcomes.slice(0, 2), [[101, null], [101, null]], JSON.stringify(outcomes));
    assert.ok(outcomes.slice(2).some(([s, r]) => s === 503 && r === '1'), JSON.stringify(outcomes));
  });

  it('a refused page comes back by itself', async () => {
    // Keep taking every place the bucket frees until the page has been told to wait, then let
    // it in: it must come back by itself.
    const token = await login(socketio.url, 'spender');
    let n = 0;
    const spend = () => {
      const socket = io(socketio.url, {
        auth: { protocol: 1, session: `spend-${n += 1}`, token },
        transports: ['websocket'], forceNew: true, reconnection: false,
      });
      sockets.push(socket);
    };
    for (let i = 0; i < 3; i += 1) spend();
    const spender = setInterval(spend, 50);
    try {
      const page = chrome.context.pages()[0];
      await page.goto(`${socketio.url}/?user=late&${CLIENT}`);
      await waitFor(() => page.evaluate(() => (window.demo?.client?.stats.busy ?? 0) >= 1),
        { timeout: 15000, what: 'the page told to wait' });
      clearInterval(spender);
      await waitFor(() => page.evaluate(() => window.demo.client.status === 'connected'),
        { timeout: 15000, what: 'the page connected after the wait' });
      const status = await page.evaluate(() => document.getElementById('status').textContent);
      assert.match(status, /Connected as late/);
    } finally {
      clearInterval(spender);
    }
  });
});
