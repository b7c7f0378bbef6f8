// presence-client.js: the browser side of presence-tracker. No dependencies.
//
// What it sends, and why:
// - a stable session id per tab, kept in sessionStorage: a reload keeps it (so the server sees
//   the same session come back, not a new one), a new tab gets a new one;
// - heartbeats carrying what the human is doing: `active` (page visible, recent input), `idle`
//   (visible, no input for `idleAfterMs`) or `background` (hidden or frozen); every
//   `heartbeatMs` while visible, every `hiddenHeartbeatMs` while hidden (browsers throttle
//   timers in hidden tabs anyway), and at once when the activity changes;
// - an explicit `leave` on `pagehide` (tab closed, navigated away, reload), so the server can
//   use its short grace instead of waiting for a timeout;
// - its activity right after every (re)connect, so the server's view is fresh at once.
//
// It never decides presence: the server derives it from how old the last signal is.
//
// Usage (Socket.IO, with socket.io-client's `io` loaded):
//
//   const client = PresenceClient.start({ transport: 'socketio', io, user: 'ada',
//     onState(state) {}, onPresence(update) {}, onSessions(update) {}, onError(message) {} });
//
// or over a plain WebSocket at /ws: `{ transport: 'websocket', user: 'ada', ... }`.
//
// Known limit: "duplicate tab" copies sessionStorage, so the copy reuses the session id; the
// server then sees one session that moves between two connections.

(function (global) {
  'use strict';

  const SESSION_KEY = 'presence-tracker.session';

  const DEFAULTS = {
    transport: 'socketio', // or 'websocket'
    io: null, // socket.io-client's `io`, for the 'socketio' transport
    url: null, // default: this page's origin (and `/ws` for the 'websocket' transport)
    user: null, // required: the user name
    heartbeatMs: 5000, // while visible; keep it well under the server's `active` threshold
    hiddenHeartbeatMs: 60000, // while hidden; keep it under the server's `away` threshold
    idleAfterMs: 60000, // no input for this long: `idle`
    reconnectMs: 1000, // first reconnect delay; doubles up to reconnectMaxMs
    reconnectMaxMs: 5000,
    onState: () => {}, // { now, users: [{ user, presence, sessions, last_seen }] }
    onPresence: () => {}, // { event: { subject, from, to, at, cause, seq }, view }
    onSessions: () => {}, // { user, view }: tab count changed, presence did not
    onError: () => {}, // message (string) from the server
    onStatus: () => {}, // 'connecting' | 'connected' | 'disconnected' | 'rejected' | 'stopped'
  };

  // The tab's session id: created once, kept across reloads of this tab only.
  function sessionId() {
    let id = null;
    try {
      id = global.sessionStorage.getItem(SESSION_KEY);
    } catch (_) {
      // Storage disabled: a fresh id per page load still works, a reload is then a new session.
    }
    if (!id) {
      id = newId();
      try {
        global.sessionStorage.setItem(SESSION_KEY, id);
      } catch (_) {}
    }
    return id;
  }

  function newId() {
    if (global.crypto && typeof global.crypto.randomUUID === 'function') {
      return global.crypto.randomUUID();
    }
    const bytes = new Uint8Array(16);
    global.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // Socket.IO: reconnection, buffering and ping/pong come from socket.io-client.
  function socketIoTransport(options, handlers) {
    if (typeof options.io !== 'function') {
      throw new Error('PresenceClient: the socketio transport needs socket.io-client\'s io');
    }
    const socket = options.io(options.url || undefined, {
      // A function, so every reconnect sends the activity of that moment: a hidden tab that
      // reconnects starts as background and never shows active for an instant.
      auth: (send) => send({ user: options.user, session: options.session, activity: handlers.activity() }),
      reconnectionDelay: options.reconnectMs,
      reconnectionDelayMax: options.reconnectMaxMs,
    });
    socket.on('connect', () => handlers.connected(socket.id));
    socket.on('disconnect', (reason) => {
      // 'io server disconnect': the server refused us; socket.io will not retry, nor do we.
      handlers.disconnected(reason === 'io server disconnect');
    });
    socket.on('state', handlers.state);
    socket.on('presence', handlers.presence);
    socket.on('sessions', handlers.sessions);
    socket.on('error', (payload) => handlers.error(payload && payload.message));
    return {
      // volatile: a heartbeat that cannot go now is worthless later, don't queue it.
      heartbeat: (activity) => socket.connected && socket.volatile.emit('heartbeat', activity),
      leave: () => socket.connected && socket.emit('leave'),
      close: () => socket.disconnect(),
      open: () => socket.connect(),
    };
  }

  // Plain WebSocket with JSON messages; reconnects with a doubling delay.
  function webSocketTransport(options, handlers) {
    const origin = global.location;
    const url = options.url ||
      (origin.protocol === 'https:' ? 'wss://' : 'ws://') + origin.host + '/ws';
    let ws = null;
    let closing = false; // we closed it: no reconnect
    let delay = options.reconnectMs;
    let retry = null;
    let counter = 0; // a local connection number, for display: the server numbers its own

    function open() {
      closing = false;
      clearTimeout(retry);
      if (ws && ws.readyState <= 1) return;
      const socket = new WebSocket(url);
      ws = socket;
      socket.onopen = () => {
        delay = options.reconnectMs;
        socket.send(JSON.stringify({
          type: 'hello', user: options.user, session: options.session, activity: handlers.activity(),
        }));
        counter += 1;
        handlers.connected('ws-' + counter);
      };
      socket.onmessage = (message) => {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch (_) {
          return;
        }
        if (data.type === 'state') handlers.state(data);
        else if (data.type === 'presence') handlers.presence(data);
        else if (data.type === 'sessions') handlers.sessions(data);
        else if (data.type === 'error') handlers.error(data.message);
      };
      socket.onclose = (event) => {
        if (ws !== socket) return;
        ws = null;
        // 1008 (policy violation): the server refused the hello; retrying would not help.
        const refused = event.code === 1008;
        handlers.disconnected(refused);
        if (!closing && !refused) {
          retry = setTimeout(open, delay);
          delay = Math.min(delay * 2, options.reconnectMaxMs);
        }
      };
    }

    function send(message) {
      if (ws && ws.readyState === 1) ws.send(JSON.stringify(message));
    }

    // A connection that died silently is found by the server's pings; here we only react to the
    // browser telling us the network is back, to reconnect without waiting for the timer.
    global.addEventListener('online', () => {
      if (!closing && !ws) open();
    });

    open();
    return {
      heartbeat: (activity) => send({ type: 'heartbeat', activity }),
      leave: () => send({ type: 'leave' }),
      close: () => {
        closing = true;
        clearTimeout(retry);
        if (ws) ws.close(1000, 'leaving');
      },
      open,
    };
  }

  function start(userOptions) {
    const options = Object.assign({}, DEFAULTS, userOptions);
    if (!options.user) throw new Error('PresenceClient: a user is required');
    options.session = options.session || sessionId();

    const doc = global.document;
    let lastInput = Date.now();
    let frozen = false;
    let sent = null; // the activity of the last heartbeat sent
    let sentAt = 0;
    let timer = null;
    let stopped = false;
    const lastSeq = new Map(); // user -> seq of the newest transition applied

    const client = {
      sessionId: options.session,
      connectionId: null,
      status: 'connecting',
      activity,
      stop,
    };

    function setStatus(status) {
      client.status = status;
      options.onStatus(status);
    }

    function activity() {
      if (frozen || doc.visibilityState !== 'visible') return 'background';
      return Date.now() - lastInput >= options.idleAfterMs ? 'idle' : 'active';
    }

    function heartbeat() {
      const current = activity();
      transport.heartbeat(current);
      sent = current;
      sentAt = Date.now();
      schedule();
    }

    // One timer: the next heartbeat, or the moment the tab turns idle, whichever is first.
    function schedule() {
      clearTimeout(timer);
      if (stopped) return;
      const current = activity();
      const every = current === 'background' ? options.hiddenHeartbeatMs : options.heartbeatMs;
      let wait = Math.max(0, sentAt + every - Date.now());
      if (current === 'active') {
        wait = Math.min(wait, Math.max(0, lastInput + options.idleAfterMs - Date.now()));
      }
      timer = setTimeout(() => {
        const due = Date.now() - sentAt >= every - 5; // timers may fire a few ms early
        if (due || activity() !== sent) heartbeat();
        else schedule();
      }, wait);
    }

    // Something changed what we would report: tell the server now, not at the next beat.
    function changed() {
      if (!stopped && activity() !== sent) heartbeat();
      else schedule();
    }

    function onInput() {
      const wasIdle = activity() === 'idle';
      lastInput = Date.now();
      if (wasIdle) changed();
    }

    const transport = (options.transport === 'websocket' ? webSocketTransport : socketIoTransport)(
      options,
      {
        activity,
        connected(connectionId) {
          client.connectionId = connectionId;
          setStatus('connected');
          heartbeat(); // re-send our state at once after every (re)connect
        },
        disconnected(refused) {
          setStatus(refused ? 'rejected' : stopped ? 'stopped' : 'disconnected');
        },
        state(state) {
          options.onState(state);
        },
        presence(update) {
          const user = update.event.subject.user;
          const seq = update.event.seq;
          // Transitions may arrive out of order; an older one must not undo a newer one. A
          // user coming from offline starts a new chain (the server may have forgotten it).
          if (update.event.from !== 'offline' && seq <= (lastSeq.get(user) || 0)) return;
          lastSeq.set(user, seq);
          options.onPresence(update);
        },
        sessions(update) {
          options.onSessions(update);
        },
        error(message) {
          options.onError(message || 'error');
        },
      },
    );

    const listeners = [];
    function listen(target, type, handler, opts) {
      target.addEventListener(type, handler, opts);
      listeners.push(() => target.removeEventListener(type, handler, opts));
    }

    for (const type of ['pointerdown', 'pointermove', 'keydown', 'wheel', 'touchstart', 'scroll']) {
      listen(global, type, onInput, { passive: true, capture: true });
    }
    listen(doc, 'visibilitychange', changed);
    listen(doc, 'freeze', () => {
      // The page is about to stop running: the last thing the server hears is "background".
      frozen = true;
      heartbeat();
    });
    listen(doc, 'resume', () => {
      frozen = false;
      changed();
    });
    listen(global, 'pagehide', () => {
      // Closing, navigating or reloading. A reload comes back within the server's leave grace
      // with the same session id, so nothing flaps.
      clearTimeout(timer);
      transport.leave();
      transport.close();
    });
    listen(global, 'pageshow', (event) => {
      // Back from the back/forward cache: the page lives again, with the same session.
      if (event.persisted && !stopped) transport.open();
    });

    // Stops everything and tells the server we are leaving.
    function stop() {
      stopped = true;
      clearTimeout(timer);
      listeners.forEach((remove) => remove());
      transport.leave();
      transport.close();
      setStatus('stopped');
    }

    setStatus('connecting');
    return client;
  }

  // Forgets this tab's session id and makes a new one: for a tab that signs in as someone else
  // (a session belongs to one user for its whole life).
  function resetSession() {
    try {
      global.sessionStorage.removeItem(SESSION_KEY);
    } catch (_) {}
    return sessionId();
  }

  global.PresenceClient = { start, sessionId, resetSession };
})(typeof window !== 'undefined' ? window : globalThis);
