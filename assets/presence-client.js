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
// It speaks protocol 1 of presence-tracker-server (crates/presence-tracker-server/src/wire.rs)
// and keeps the presence of the online users it is sent itself, by the protocol's resync rule:
// a `state` replaces everything; an `update` applies only if its version is the one after what
// it holds and its epoch is the same, else it asks for the state again (`resync`); an update
// whose user `seq` is not newer than the one held is old news. A tab sent only the users it
// subscribed to (`users`, `client.subscribe([...])`: a state of scope `users`) cannot see a
// skipped version, since versions of other users skip: it applies updates past the version it
// holds, and the server sends it a fresh state whenever it dropped any. After a server restart
// (new epoch) or a reconnect it holds the new state, never a ghost.
//
// Rooms (documents, channels): `client.join(room, meta)` puts this tab in a room with metadata
// its members see (a name, a colour, "editing section 2"), `client.update(room, meta)` changes
// it (one update for the others, never a leave and a join; sent at most every `metaIntervalMs`,
// the latest wins), `client.leave(room)` leaves; `client.watch(room)` follows a room without
// being in it, and `client.watch(room, handler, { view: 'occupancy' })` follows only how many
// are in it (`view.occupancy`: { users, sessions }, each { active, idle, away, stale }), at
// most one message per gathering window however many join or leave.
// `client.watch(room, handler, { view: 'window', limit: 50, after })` follows the first `limit`
// members in the room's order (active first, the longest first) after the key `after`
// (`view.window`: { members: [{ key, user, presence, sessions }], more }; page on with the last
// member's key) and the counts. A room bigger than the server's bound (1,000 members by default)
// is not listed to a tab that did not ask for a window, whether it is in the room or watches it:
// the tab holds its counts (`view.big` is true, `view.members` empty) until it shrinks.
// Each room is kept by the protocol's rule for rooms: a `room_state` replaces what
// the tab holds of the room; `room_updates` apply when they follow the version held (members
// whose version is above it replace theirs), else the tab asks for the room again
// (`room_resync`): on a skipped version or a new epoch. The tab's rooms go in the hello of
// every (re)connect, so a reload or a reconnect that names the same rooms shows nobody a thing.
//
// Usage (Socket.IO, with socket.io-client's `io` loaded):
//
//   const client = PresenceClient.start({ transport: 'socketio', io,
//     onUsers(users, change) {}, onRoom(room, view, change) {}, onRefused(refusal) {},
//     onStatus(status) {} });
//   client.join('doc-42', { name: 'Ada', section: 1 }, (view, change) => render(view));
//
// or over a plain WebSocket at /ws: `{ transport: 'websocket', ... }`. Who the tab is, is the
// server's decision (a cookie it set at sign-in, or `token`); `watch: true` only watches.
//
// Several nodes of one cluster (servers with `--redis`): `urls` lists them; the client connects
// to the first and, when an attempt to reach a node fails (it died, it was stopped), to the
// next. Its session then moves to that node, and nobody sees it flap. Over Socket.IO those
// connections are WebSocket only (the pages' origin is one node; no CORS for the others).
//
// Known limit: "duplicate tab" copies sessionStorage, so the copy reuses the session id; the
// server then sees one session that moves between two connections (on two nodes of a cluster,
// the older connection is refused: `session_superseded`).

(function (global) {
  'use strict';

  const SESSION_KEY = 'presence-tracker.session';

  const PROTOCOL = 1;

  const DEFAULTS = {
    transport: 'socketio', // or 'websocket'
    io: null, // socket.io-client's `io`, for the 'socketio' transport
    url: null, // default: this page's origin (and `/ws` for the 'websocket' transport)
    urls: null, // several nodes of a cluster, tried in turn (WebSocket URLs for 'websocket')
    token: null, // a credential for the server's authentication hook (cookies go by themselves)
    watch: false, // only watch: no session, no heartbeats
    heartbeatMs: 5000, // while visible; keep it well under the server's `active` threshold
    hiddenHeartbeatMs: 60000, // while hidden; keep it under the server's `away` threshold
    idleAfterMs: 60000, // no input for this long: `idle`
    reconnectMs: 1000, // first reconnect delay; doubles up to reconnectMaxMs
    reconnectMaxMs: 5000,
    // Each reconnect waits its delay less up to this share of it, at random (socket.io-client's
    // randomizationFactor): the tabs of a restarted server come back spread out, not at once.
    reconnectJitter: 0.5,
    metaIntervalMs: 60, // the least time between two metadata updates of one room (the server's bound: 50 ms)
    rooms: null, // rooms to be in from the first hello: { room: meta } or [[room, meta]]
    // The users this tab is sent: an array of user ids (those only), 'all' (every user, where
    // the server enables that feed), or null (the server's default: every user where enabled,
    // else nobody). Change it with client.subscribe(users).
    users: null,
    // The online users this tab is sent: Map(user -> { user, presence, sessions, last_seen, seq }),
    // after each change; `change` is { kind: 'state', state } or { kind: 'updates', users: [..] }.
    onUsers: () => {},
    // A room this tab is in or watches, after each change: `view` is { room, epoch, version,
    // members: Map(user -> { user, presence, sessions: [{ session, meta }] }), joined, watching,
    // meta }; `change` is { kind: 'state', state } or { kind: 'updates', members: [changes] }
    // (each { version, change: 'joined'|'presence'|'updated'|'left', user, presence, sessions }).
    onRoom: () => {},
    onRefused: () => {}, // { code, message, room? }: something this client sent changed nothing
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

  // A reconnect delay less a random share of it (never more than the delay).
  function jittered(delay, options) {
    const share = Math.min(Math.max(Number(options.reconnectJitter) || 0, 0), 1);
    return delay * (1 - share * Math.random());
  }

  // How long to wait after a `busy` refusal (the server admits so many connections a second):
  // its retry_after_ms, plus up to as much again at random, so the refused do not come back
  // together. Never earlier than the server said.
  function busyDelay(refusal) {
    const after = Math.max(Number(refusal.retry_after_ms) || 0, 100);
    return after * (1 + Math.random());
  }

  // Socket.IO: reconnection, buffering and ping/pong come from socket.io-client.
  function socketIoTransport(options, handlers) {
    if (typeof options.io !== 'function') {
      throw new Error('PresenceClient: the socketio transport needs socket.io-client\'s io');
    }
    if (options.urls && options.urls.length > 1) return socketIoNodes(options, handlers);
    const socket = options.io(options.url || undefined, {
      // A function, so every reconnect sends the activity of that moment: a hidden tab that
      // reconnects starts as background and never shows active for an instant.
      auth: (send) => send(handlers.hello()),
      reconnectionDelay: options.reconnectMs,
      reconnectionDelayMax: options.reconnectMaxMs,
      randomizationFactor: options.reconnectJitter,
    });
    socket.on('connect', () => handlers.connected(socket.id, options.url || global.location.origin));
    // 'io server disconnect': the server ended it (the cluster refused the session): socket.io
    // does not retry, nor do we.
    socket.on('disconnect', (reason) => handlers.disconnected(reason === 'io server disconnect'));
    socket.on('connect_error', (error) => {
      // The server's hook or the tracker refused the handshake: its message is the refusal.
      // socket.io does not retry a refused handshake (socket.active is false), nor do we.
      if (socket.active) return; // a network error: socket.io retries by itself
      let refusal = { code: 'refused', message: String(error && error.message) };
      try {
        refusal = JSON.parse(error.message);
      } catch (_) {}
      if (refusal.code === 'busy') {
        // Not a refusal of this client: the server admits others first. Again, later.
        handlers.busy(refusal);
        handlers.disconnected(false);
        setTimeout(() => socket.connect(), busyDelay(refusal));
        return;
      }
      handlers.refused(refusal);
      handlers.disconnected(true);
    });
    socket.on('presence', handlers.message);
    socket.on('refused', handlers.refused);
    return {
      // volatile: a heartbeat that cannot go now is worthless later, don't queue it.
      heartbeat: (activity) => socket.connected && socket.volatile.emit('heartbeat', { activity }),
      leave: () => socket.connected && socket.emit('leave'),
      resync: () => socket.connected && socket.emit('resync'),
      // Room messages: `{ type, room, meta? }` as the event `type` with the rest as payload.
      // Not queued while disconnected: the next hello names the rooms.
      room: (type, payload) => socket.connected && socket.emit(type, payload),
      // Not queued either: the next hello names the users.
      subscribe: (payload) => socket.connected && socket.emit('subscribe', payload),
      close: () => socket.disconnect(),
      open: () => socket.connect(),
    };
  }

  // Socket.IO to several nodes of a cluster: one socket at a time, reconnected by us (not by
  // socket.io-client) so that a failed attempt moves on to the next node.
  function socketIoNodes(options, handlers) {
    const urls = options.urls;
    let index = 0;
    let socket = null;
    let closing = false; // we closed it: no reconnect
    let delay = options.reconnectMs;
    let retry = null;

    function again() {
      clearTimeout(retry);
      retry = setTimeout(open, jittered(delay, options));
      delay = Math.min(delay * 2, options.reconnectMaxMs);
    }

    function open() {
      closing = false;
      clearTimeout(retry);
      if (socket) return;
      const url = urls[index];
      const s = options.io(url, {
        auth: (send) => send(handlers.hello()),
        reconnection: false,
        forceNew: true,
        transports: ['websocket'],
      });
      socket = s;
      s.on('connect', () => {
        delay = options.reconnectMs;
        handlers.connected(s.id, url);
      });
      s.on('disconnect', (reason) => {
        if (socket !== s) return;
        socket = null;
        const refused = reason === 'io server disconnect'; // the server ended it: no retry
        handlers.disconnected(refused);
        if (!closing && !refused) again();
      });
      s.on('connect_error', (error) => {
        if (socket !== s) return;
        socket = null;
        if (s.active) {
          // The node did not answer: the next one, after the delay.
          s.close();
          index = (index + 1) % urls.length;
          handlers.disconnected(false);
          if (!closing) again();
          return;
        }
        let refusal = { code: 'refused', message: String(error && error.message) };
        try {
          refusal = JSON.parse(error.message);
        } catch (_) {}
        s.close();
        if (refusal.code === 'busy') {
          // This node admits others first: the next node, or this one again, later.
          index = (index + 1) % urls.length;
          handlers.busy(refusal);
          handlers.disconnected(false);
          clearTimeout(retry);
          if (!closing) retry = setTimeout(open, busyDelay(refusal));
          return;
        }
        handlers.refused(refusal);
        handlers.disconnected(true);
      });
      s.on('presence', handlers.message);
      s.on('refused', handlers.refused);
    }

    const live = () => socket && socket.connected;
    open();
    return {
      heartbeat: (activity) => live() && socket.volatile.emit('heartbeat', { activity }),
      leave: () => live() && socket.emit('leave'),
      resync: () => live() && socket.emit('resync'),
      room: (type, payload) => live() && socket.emit(type, payload),
      subscribe: (payload) => live() && socket.emit('subscribe', payload),
      close: () => {
        closing = true;
        clearTimeout(retry);
        if (socket) socket.disconnect();
      },
      open,
    };
  }

  // Plain WebSocket with JSON messages; reconnects with a doubling delay (to the next of
  // `urls` after an attempt that failed).
  function webSocketTransport(options, handlers) {
    const origin = global.location;
    const urls = options.urls && options.urls.length ? options.urls : [options.url ||
      (origin.protocol === 'https:' ? 'wss://' : 'ws://') + origin.host + '/ws'];
    let index = 0;
    let ws = null;
    let closing = false; // we closed it: no reconnect
    let delay = options.reconnectMs;
    let retry = null;
    let counter = 0; // a local connection number, for display: the server numbers its own

    function open() {
      closing = false;
      clearTimeout(retry);
      if (ws && ws.readyState <= 1) return;
      const url = urls[index];
      const socket = new WebSocket(url);
      let opened = false;
      ws = socket;
      socket.onopen = () => {
        opened = true;
        delay = options.reconnectMs;
        socket.send(JSON.stringify(Object.assign({ type: 'hello' }, handlers.hello())));
        counter += 1;
        handlers.connected('ws-' + counter, url);
      };
      socket.onmessage = (message) => {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch (_) {
          return;
        }
        if (data.type === 'refused') handlers.refused(data);
        else handlers.message(data);
      };
      socket.onclose = (event) => {
        if (ws !== socket) return;
        ws = null;
        if (!opened) index = (index + 1) % urls.length; // that node did not answer
        // 1008 (policy violation): the server refused the hello; retrying would not help.
        const refused = event.code === 1008;
        handlers.disconnected(refused);
        if (!closing && !refused) {
          retry = setTimeout(open, jittered(delay, options));
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
      resync: () => send({ type: 'resync' }),
      room: (type, payload) => send(Object.assign({ type }, payload)),
      subscribe: (payload) => send(Object.assign({ type: 'subscribe' }, payload)),
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
    options.session = options.watch ? null : options.session || sessionId();

    const doc = global.document;
    let lastInput = Date.now();
    let frozen = false;
    let sent = null; // the activity of the last heartbeat sent
    let sentAt = 0;
    let timer = null;
    let stopped = false;
    // What the client holds: the users as of (epoch, version); null until the first state.
    const users = new Map();
    let epoch = null;
    let version = null;
    let scope = 'all'; // 'users': a subscribed feed, whose versions skip those of other users
    let resyncing = false;
    // The rooms this tab is in or watches: room -> view (see `onRoom`), plus what the client
    // needs: `held` (a state came since the last (re)connect), `resyncing`, the room's own
    // `handler`, and the metadata update waiting for its turn.
    const rooms = new Map();
    let connected = false;
    // Test hooks: drop the next room_updates of a room, as a lossy network would.
    const drops = new Map(); // room -> how many to drop
    // busy: handshakes the server's admission refused (the client came back after the wait).
    const stats = { roomStates: 0, roomUpdates: 0, roomResyncs: 0, dropped: 0, busy: 0 };

    const client = {
      sessionId: options.session,
      // This tab's session as room states show it (its `session` there): the handle the
      // server's `welcome` gives, or the session id where the server shows ids.
      member: options.session,
      connectionId: null,
      node: null, // the URL of the server (node) of the current connection
      status: 'connecting',
      epoch: null, // the server's epoch, once a state came
      users,
      rooms,
      activity,
      resync: () => transport.resync(),
      subscribe,
      join,
      update,
      leave: leaveRoom,
      watch,
      unwatch,
      roomResync,
      stats,
      test: {
        // Drops the next `n` room_updates of `room` (what a lost message would do).
        dropNext(room, n = 1) {
          drops.set(room, (drops.get(room) || 0) + n);
        },
      },
      stop,
    };

    function roomView(room) {
      let view = rooms.get(room);
      if (!view) {
        view = {
          room, epoch: null, version: null, members: new Map(), joined: false, watching: false,
          shows: 'members', occupancy: null, big: false, window: null, windowAsked: null,
          meta: null, held: false, resyncing: false, handler: null, pending: undefined,
          sentAt: 0, timer: null,
        };
        rooms.set(room, view);
      }
      return view;
    }

    function notifyRoom(view, change) {
      if (view.handler) view.handler(view, change);
      options.onRoom(view.room, view, change);
    }

    // This tab joins `room` with `meta` (already in it: its metadata there becomes `meta`).
    // The users this tab is sent from now on: an array of ids, or 'all'. A state of them
    // replaces what the tab holds; every later hello names them.
    function subscribe(wanted) {
      options.users = wanted;
      if (!connected) return; // the next hello names them
      resyncing = true;
      transport.subscribe(wanted === 'all' ? { all_users: true } : { users: wanted });
    }

    function join(room, meta = null, handler = null) {
      if (options.watch) throw new Error('PresenceClient: a watcher joins no room (watch it)');
      const view = roomView(room);
      if (handler) view.handler = handler;
      view.joined = true;
      view.meta = meta;
      view.pending = undefined;
      clearTimeout(view.timer);
      view.sentAt = Date.now();
      if (connected) transport.room('join', { room, meta });
      return view;
    }

    // The tab's metadata in `room`: sent now, or at the end of the room's interval (the latest
    // wins), so a stream of changes (a cursor) never goes faster than the server takes.
    function update(room, meta) {
      const view = rooms.get(room);
      if (!view || !view.joined) throw new Error('PresenceClient: not in room ' + room);
      view.meta = meta;
      view.pending = meta;
      flushMeta(view);
    }

    function flushMeta(view, after = 0) {
      clearTimeout(view.timer);
      const wait = Math.max(after, view.sentAt + options.metaIntervalMs - Date.now());
      if (wait > 0) {
        view.timer = setTimeout(() => flushMeta(view), wait);
        return;
      }
      if (view.pending === undefined || !view.joined) return;
      const meta = view.pending;
      view.pending = undefined;
      view.sentAt = Date.now();
      if (connected) transport.room('update', { room: view.room, meta });
    }

    function leaveRoom(room) {
      const view = rooms.get(room);
      if (!view || !view.joined) return;
      view.joined = false;
      view.pending = undefined;
      clearTimeout(view.timer);
      if (connected) transport.room('leave_room', { room });
      if (!view.watching) rooms.delete(room);
    }

    // What a watch of `view` sends: the view only when it is not the default.
    function watchMessage(view) {
      if (view.shows === 'occupancy') return { room: view.room, view: 'occupancy' };
      if (view.shows === 'window') {
        const message = { room: view.room, view: 'window', limit: view.windowAsked.limit };
        if (view.windowAsked.after != null) message.after = view.windowAsked.after;
        return message;
      }
      return { room: view.room };
    }

    // Follows `room` (in it or not): its members, its counts (`{ view: 'occupancy' }`), or a
    // window of its members and its counts (`{ view: 'window', limit, after }`).
    function watch(room, handler = null, { view: shows = 'members', limit = 50, after = null } = {}) {
      const view = roomView(room);
      if (handler) view.handler = handler;
      const asked = shows === 'window' ? { limit, after } : null;
      const same = JSON.stringify(asked) === JSON.stringify(view.windowAsked);
      if (view.watching && view.shows === shows && same) return view;
      view.watching = true;
      view.shows = shows;
      view.windowAsked = asked;
      if (shows !== 'window') view.window = null;
      if (connected) transport.room('watch', watchMessage(view));
      return view;
    }

    function unwatch(room) {
      const view = rooms.get(room);
      if (!view || !view.watching) return;
      view.watching = false;
      if (connected) transport.room('unwatch', { room });
      if (!view.joined) rooms.delete(room);
    }

    // Asks for the room's state again; its updates are ignored until it comes.
    function roomResync(room) {
      const view = rooms.get(room);
      if (!view) return;
      view.resyncing = true;
      stats.roomResyncs += 1;
      transport.room('room_resync', { room });
    }

    function roomState(message) {
      const view = rooms.get(message.room);
      if (!view) return; // a room this tab left meanwhile
      stats.roomStates += 1;
      view.rejoined = false;
      view.members = new Map(message.members.map((m) => [m.user, m]));
      view.epoch = message.epoch;
      view.version = message.version;
      view.big = false;
      view.held = true;
      view.resyncing = false;
      notifyRoom(view, { kind: 'state', state: message });
    }

    // A room's counts: each message is whole, the newest of an epoch wins.
    function roomOccupancy(message) {
      const view = rooms.get(message.room);
      if (!view) return; // a room this tab left meanwhile
      if (view.epoch === message.epoch && view.occupancy && message.version <= view.version) return;
      view.epoch = message.epoch;
      view.version = message.version;
      view.occupancy = { users: message.users, sessions: message.sessions };
      if (view.shows === 'members' && (view.joined || view.watching)) {
        // Counts where members were asked for: the room is too big to list. Its members come
        // again, whole, when it shrinks.
        view.big = true;
        view.held = false;
        view.members = new Map();
      }
      notifyRoom(view, { kind: 'occupancy', occupancy: view.occupancy });
    }

    // A window of a room's members: each message is whole, the newest of an epoch wins.
    function roomWindow(message) {
      const view = rooms.get(message.room);
      if (!view || view.shows !== 'window') return; // no longer asked for
      const held = view.window;
      if (held && held.epoch === message.epoch && message.version < held.version) return;
      view.window = {
        epoch: message.epoch, version: message.version, after: message.after ?? null,
        limit: message.limit, members: message.members, more: message.more,
      };
      notifyRoom(view, { kind: 'window', window: view.window });
    }

    function roomUpdates(message) {
      const view = rooms.get(message.room);
      if (!view || !view.held || view.resyncing) return; // its state is on the way
      const dropping = drops.get(message.room) || 0;
      if (dropping > 0) {
        drops.set(message.room, dropping - 1);
        stats.dropped += 1;
        return;
      }
      if (message.epoch !== view.epoch) return roomResync(view.room); // a new history
      if (message.to <= view.version) return; // had it already
      if (message.from > view.version + 1) return roomResync(view.room); // a version skipped
      stats.roomUpdates += 1;
      const changed = [];
      for (const m of message.members) {
        if (m.version <= view.version) continue;
        if (m.presence === 'offline') view.members.delete(m.user);
        else view.members.set(m.user, { user: m.user, presence: m.presence, sessions: m.sessions });
        changed.push(m);
      }
      view.version = message.to;
      if (changed.length) notifyRoom(view, { kind: 'updates', members: changed });
    }

    // What the server refused about a room.
    function roomRefused(refusal) {
      const view = rooms.get(refusal.room);
      if (!view) return;
      if (refusal.code === 'metadata_too_frequent' && view.joined) {
        // Sent too soon: the latest metadata again once the server takes it.
        if (view.pending === undefined) view.pending = view.meta;
        flushMeta(view, refusal.retry_after_ms || options.metaIntervalMs);
        return;
      }
      if (refusal.code === 'not_in_room' && view.joined && !view.rejoined) {
        // The server lost this tab's place (its session ended meanwhile): join again, once.
        view.rejoined = true;
        transport.room('join', { room: view.room, meta: view.meta });
        return;
      }
      if (['forbidden', 'room_full', 'limit', 'watch_only', 'bad_message'].includes(refusal.code)) {
        // The room would not have this tab: stop claiming it.
        if (refusal.code === 'forbidden' || refusal.code === 'bad_message') {
          view.joined = false;
          view.watching = false;
        } else if (view.joined) {
          view.joined = false; // the join was refused
        } else {
          view.watching = false; // the watch was
        }
        if (!view.joined && !view.watching) rooms.delete(view.room);
      }
      // metadata_too_large: the room keeps the metadata it had.
    }

    function setStatus(status) {
      client.status = status;
      options.onStatus(status);
    }

    function activity() {
      if (frozen || doc.visibilityState !== 'visible') return 'background';
      return Date.now() - lastInput >= options.idleAfterMs ? 'idle' : 'active';
    }

    function heartbeat() {
      if (options.watch) return;
      const current = activity();
      transport.heartbeat(current);
      sent = current;
      sentAt = Date.now();
      schedule();
    }

    // One timer: the next heartbeat, or the moment the tab turns idle, whichever is first.
    function schedule() {
      clearTimeout(timer);
      if (stopped || options.watch) return;
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
        connected(connectionId, node) {
          client.connectionId = connectionId;
          client.node = node;
          connected = true;
          setStatus('connected');
          heartbeat(); // re-send our state at once after every (re)connect
          // The hello named the rooms this tab is in; the watched ones are asked for again.
          for (const view of rooms.values()) {
            if (view.watching) transport.room('watch', watchMessage(view));
            if (view.joined && view.pending !== undefined) flushMeta(view);
          }
        },
        disconnected(refused) {
          // Whatever comes next starts with a state: until then updates cannot apply.
          resyncing = true;
          connected = false;
          for (const view of rooms.values()) view.held = false;
          setStatus(refused ? 'rejected' : stopped ? 'stopped' : 'disconnected');
        },
        hello() {
          const hello = { protocol: PROTOCOL, activity: activity() };
          if (options.session) {
            hello.session = options.session;
            // Exactly the rooms this tab is in, with its metadata there: a reconnect or a
            // reload naming the same ones changes nothing anyone sees.
            hello.rooms = [...rooms.values()].filter((v) => v.joined)
              .map((v) => ({ room: v.room, meta: v.meta }));
            for (const view of rooms.values()) if (view.joined) view.pending = undefined;
          }
          if (options.token) hello.token = options.token;
          if (options.users === 'all') hello.all_users = true;
          else if (Array.isArray(options.users)) hello.users = options.users;
          return hello;
        },
        message(message) {
          // Room states show sessions by handle: this tab's, to recognise itself in them.
          if (message.type === 'welcome') { client.member = message.session; return; }
          if (message.type === 'room_state') return roomState(message);
          if (message.type === 'room_updates') return roomUpdates(message);
          if (message.type === 'room_occupancy') return roomOccupancy(message);
          if (message.type === 'room_window') return roomWindow(message);
          if (message.type === 'state') {
            users.clear();
            for (const user of message.users) users.set(user.user, user);
            epoch = message.epoch;
            version = message.version;
            scope = message.scope || 'all';
            client.epoch = epoch;
            resyncing = false;
            options.onUsers(users, { kind: 'state', state: message });
          } else if (message.type === 'updates') {
            if (resyncing) return; // a state is on its way: it replaces all of this
            // A subscribed feed skips the versions of other users: only a scope of every
            // user can tell a missed update (the server sends a state when it dropped any).
            const skipped = scope === 'all' ? message.from !== version + 1 : false;
            if (message.epoch !== epoch || skipped) {
              // A missed update, or a restarted server: what we hold may be wrong.
              resyncing = true;
              transport.resync();
              return;
            }
            if (message.to <= version) return; // in the state we hold already
            version = message.to;
            const changed = [];
            for (const user of message.users) {
              const held = users.get(user.user);
              if (held && user.seq <= held.seq) continue; // old news
              if (user.presence === 'offline') users.delete(user.user);
              else users.set(user.user, user);
              changed.push(user);
            }
            if (changed.length) options.onUsers(users, { kind: 'updates', users: changed });
          }
        },
        busy() {
          stats.busy += 1;
        },
        refused(refusal) {
          refusal = refusal || { code: 'refused', message: 'refused' };
          if (refusal.room !== undefined) roomRefused(refusal);
          options.onRefused(refusal);
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
      for (const view of rooms.values()) clearTimeout(view.timer);
      listeners.forEach((remove) => remove());
      transport.leave();
      transport.close();
      setStatus('stopped');
    }

    // Rooms to be in from the first hello.
    if (options.rooms && !options.watch) {
      const initial = Array.isArray(options.rooms) ? options.rooms : Object.entries(options.rooms);
      for (const [room, meta] of initial) join(room, meta);
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
