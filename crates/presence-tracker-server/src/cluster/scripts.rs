//! The Lua scripts: every write to Redis. Each touches the keys of one hash tag, reads the time
//! from Redis (`TIME`), and never errors on what it finds in Redis (a value it cannot parse is
//! removed and counted, and the count returned): only bad arguments from the node are errors.

/// Functions every `{u:..}` script shares. `settle` is where a user's cluster presence is
/// decided and published.
const PRELUDE: &str = r#"
local function clock()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end
local function int(x) return string.format('%.0f', x) end
local function foreign(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' or t == want then return 0 end
  redis.call('DEL', key)
  return 1
end
local function parse(v)
  if type(v) ~= 'string' then return nil end
  local e, node, p, d, ls = string.match(v, '^(%d+)|([^|]+)|([0-4])|(%d+)|(%d+)$')
  if not e then return nil end
  return { e = tonumber(e), node = node, p = tonumber(p), d = tonumber(d), ls = tonumber(ls) }
end
local function entry(e, node, p, d, ls)
  return int(e) .. '|' .. node .. '|' .. int(p) .. '|' .. int(d) .. '|' .. int(ls)
end
-- The user's presence: the highest of its sessions whose deadline has not passed. Removes the
-- expired ones (appending session, epoch to `out` for the node to release their ownership)
-- and the unparseable ones; bumps the version and publishes when presence or count changed.
local function settle(meta, sess, ms, us, user, cause, node, retention, channel, out)
  local garbage = 0
  local all = redis.call('HGETALL', sess)
  local best, n, ls = 0, 0, 0
  for i = 1, #all, 2 do
    local en = parse(all[i + 1])
    if not en then
      redis.call('HDEL', sess, all[i])
      garbage = garbage + 1
    elseif en.d > 0 and en.d <= ms then
      redis.call('HDEL', sess, all[i])
      out[#out + 1] = all[i]
      out[#out + 1] = int(en.e)
    else
      n = n + 1
      if en.p > best then best = en.p end
      if en.ls > ls then ls = en.ls end
    end
  end
  local m = redis.call('HMGET', meta, 'e', 'v', 'p', 'n', 'ls')
  local ue, v, p0, n0, ls0 = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4]), tonumber(m[5])
  local valid = ue and v and p0 and n0 and ls0 and p0 >= 0 and p0 <= 4 and n0 >= 0
  if not valid then
    if m[1] or m[2] or m[3] or m[4] or m[5] then
      garbage = garbage + 1
      redis.call('DEL', meta)
    end
    ue, v, p0, n0, ls0 = us, 0, 0, 0, 0
  end
  if ls0 > ls then ls = ls0 end
  local changed = 0
  if best ~= p0 or n ~= n0 then
    v = v + 1
    changed = 1
    redis.call('HSET', meta, 'e', int(ue), 'v', int(v), 'p', int(best), 'n', int(n), 'ls', int(ls))
    redis.call('PUBLISH', channel, table.concat({ '1', user, int(ue), int(v), int(p0), int(best),
      int(n), int(ls), int(ms), cause, node }, '|'))
  elseif valid and ls > ls0 then
    redis.call('HSET', meta, 'ls', int(ls))
  end
  if n == 0 then
    if redis.call('EXISTS', meta) == 1 then redis.call('PEXPIRE', meta, retention) end
  else
    redis.call('PERSIST', meta)
  end
  return changed, garbage
end
-- A member's sessions in a room: `epoch|node|presence|deadline|metadata` (metadata encoded).
local function parse_room(v)
  if type(v) ~= 'string' then return nil end
  local e, node, p, d, m = string.match(v, '^(%d+)|([^|]+)|([0-4])|(%d+)|([^|]*)$')
  if not e then return nil end
  return { e = tonumber(e), node = node, p = tonumber(p), d = tonumber(d), m = m }
end
local function room_entry(e, node, p, d, m)
  return int(e) .. '|' .. node .. '|' .. int(p) .. '|' .. int(d) .. '|' .. m
end
-- A user's presence in a room: the highest of its sessions there whose deadline has not
-- passed. Publishes a room event (joined, presence, updated, left) with the room's version
-- when what its members see of the user changed.
local function settle_room(meta, members, mine, ms, us, room, user, cause, node, retention, channel, out)
  local garbage = 0
  local all = redis.call('HGETALL', mine)
  local best, n, list = 0, 0, {}
  for i = 1, #all, 2 do
    local en = parse_room(all[i + 1])
    if not en then
      redis.call('HDEL', mine, all[i])
      garbage = garbage + 1
    elseif en.d > 0 and en.d <= ms then
      redis.call('HDEL', mine, all[i])
      out[#out + 1] = all[i]
      out[#out + 1] = int(en.e)
    else
      n = n + 1
      if en.p > best then best = en.p end
      list[#list + 1] = all[i] .. ':' .. en.m
    end
  end
  table.sort(list)
  local sessions = table.concat(list, ',')
  local digest = redis.sha1hex(sessions)
  local old = redis.call('HGET', members, user)
  local p0, n0, d0
  if old then
    local a, b, c = string.match(old, '^([0-4])|(%d+)|(%x+)$')
    if a then
      p0, n0, d0 = tonumber(a), tonumber(b), c
    else
      garbage = garbage + 1
      old = nil
    end
  end
  local rm = redis.call('HMGET', meta, 'e', 'v')
  local re, v = tonumber(rm[1]), tonumber(rm[2])
  if not (re and v) then
    if rm[1] or rm[2] then
      garbage = garbage + 1
      redis.call('DEL', meta)
    end
    re, v = us, 0
  end
  local change = nil
  if n == 0 then
    if old then
      change = 'l'
      redis.call('HDEL', members, user)
    end
  else
    if not old then
      change = 'j'
    elseif best ~= p0 then
      change = 'p'
    elseif n ~= n0 or digest ~= d0 then
      change = 'u'
    end
    redis.call('HSET', members, user, int(best) .. '|' .. int(n) .. '|' .. digest)
  end
  local changed = 0
  if change then
    v = v + 1
    changed = 1
    redis.call('HSET', meta, 'e', int(re), 'v', int(v))
    local to = 0
    if n > 0 then to = best end
    redis.call('PUBLISH', channel, table.concat({ '1', room, int(re), int(v), user, change,
      int(p0 or 0), int(to), int(ms), cause, node, sessions }, '|'))
  end
  if redis.call('HLEN', members) == 0 then
    if redis.call('EXISTS', meta) == 1 then redis.call('PEXPIRE', meta, retention) end
  else
    redis.call('PERSIST', meta)
  end
  return changed, garbage
end
"#;

/// `room`: a node's join, update or leave of one session in one room.
///
/// KEYS: room hash, members hash, the user's sessions hash in the room. ARGV: op (`j`oin or
/// update, `l`eave), session, epoch, node, presence, metadata (encoded), room, user, retention
/// ms, channel. Returns `{status, changed, garbage, swept session, swept epoch, ...}`; status
/// `ok` or `superseded` (a newer epoch of the session is in the room).
const ROOM: &str = r#"
local meta, members, mine = KEYS[1], KEYS[2], KEYS[3]
local op, sid, epoch, node = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local p, m, room, user = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local retention, channel = tonumber(ARGV[9]), ARGV[10]
if not (epoch and p and retention) or p < 0 or p > 4 or string.find(node, '|', 1, true)
  or string.find(m, '|', 1, true) then
  return redis.error_reply('ERR presence-tracker room: bad arguments')
end
local ms, us = clock()
local garbage = foreign(meta, 'hash') + foreign(members, 'hash') + foreign(mine, 'hash')
local raw = redis.call('HGET', mine, sid)
local cur = parse_room(raw)
if raw and not cur then garbage = garbage + 1 end
if cur and cur.d > 0 and cur.d <= ms then cur = nil end
local status = 'ok'
if cur and cur.e > epoch then
  status = 'superseded'
elseif op == 'j' then
  redis.call('HSET', mine, sid, room_entry(epoch, node, p, 0, m))
elseif op == 'l' then
  if cur then redis.call('HDEL', mine, sid) end
else
  return redis.error_reply('ERR presence-tracker room: unknown op')
end
local out = {}
local changed, g = settle_room(meta, members, mine, ms, us, room, user, op, node, retention, channel, out)
local res = { status, changed, garbage + g }
for i = 1, #out do res[#res + 1] = out[i] end
return res
"#;

/// `reap_room`: as `reap_user`, for one user's sessions in one room.
///
/// KEYS: room hash, members hash, the user's sessions hash in the room. ARGV: node, grace ms,
/// room, user, retention ms, channel. Returns `{remaining, changed, garbage, swept ...}`.
const REAP_ROOM: &str = r#"
local meta, members, mine = KEYS[1], KEYS[2], KEYS[3]
local dead, grace, room, user = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local retention, channel = tonumber(ARGV[5]), ARGV[6]
if not (grace and retention) then
  return redis.error_reply('ERR presence-tracker reap_room: bad arguments')
end
local ms, us = clock()
local garbage = foreign(meta, 'hash') + foreign(members, 'hash') + foreign(mine, 'hash')
local all = redis.call('HGETALL', mine)
local remaining = 0
for i = 1, #all, 2 do
  local en = parse_room(all[i + 1])
  if en and en.node == dead then
    if en.d == 0 then
      redis.call('HSET', mine, all[i], room_entry(en.e, en.node, en.p, ms + grace, en.m))
      remaining = remaining + 1
    elseif en.d > ms then
      remaining = remaining + 1
    end
  end
end
local out = {}
local changed, g = settle_room(meta, members, mine, ms, us, room, user, 'x', dead, retention, channel, out)
local res = { int(remaining), changed, garbage + g }
for i = 1, #out do res[#res + 1] = out[i] end
return res
"#;

/// `write`: a node's claim, put or drop of one session.
///
/// KEYS: user hash, sessions hash. ARGV: op (`c`laim, `p`ut, `d`rop), session, epoch, node,
/// presence, last seen, user, retention ms, channel. Returns `{status, held epoch, changed,
/// garbage, swept session, swept epoch, ...}`; status `ok`, `dropped`, `superseded` (a newer
/// epoch holds the session: the held one is returned) or `unknown` (no entry of this node
/// and epoch: claim again).
const WRITE: &str = r#"
local meta, sess = KEYS[1], KEYS[2]
local op, sid, epoch, node = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local p, ls, user = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local retention, channel = tonumber(ARGV[8]), ARGV[9]
if not (epoch and p and ls and retention) or p < 0 or p > 4 or string.find(node, '|', 1, true) then
  return redis.error_reply('ERR presence-tracker write: bad arguments')
end
local ms, us = clock()
local garbage = foreign(meta, 'hash') + foreign(sess, 'hash')
local raw = redis.call('HGET', sess, sid)
local cur = parse(raw)
if raw and not cur then garbage = garbage + 1 end
if cur and cur.d > 0 and cur.d <= ms then cur = nil end
local status, held = 'ok', 0
if cur and cur.e > epoch then
  status, held = 'superseded', cur.e
elseif op == 'c' then
  redis.call('HSET', sess, sid, entry(epoch, node, p, 0, ls))
elseif op == 'p' then
  if not cur or cur.e < epoch or cur.node ~= node then
    status = 'unknown'
  else
    redis.call('HSET', sess, sid, entry(cur.e, node, p, cur.d, math.max(ls, cur.ls)))
  end
elseif op == 'd' then
  if cur then
    redis.call('HDEL', sess, sid)
    status = 'dropped'
  else
    status = 'unknown'
  end
else
  return redis.error_reply('ERR presence-tracker write: unknown op')
end
local out = {}
local changed, g = settle(meta, sess, ms, us, user, op, node, retention, channel, out)
local res = { status, int(held), changed, garbage + g }
for i = 1, #out do res[#res + 1] = out[i] end
return res
"#;

/// `reap_user`: a lapsed or retired node's sessions of one user get the grace (those that
/// have none yet), and those whose grace ran out are removed.
///
/// KEYS: user hash, sessions hash. ARGV: node, grace ms, user, retention ms, channel. Returns
/// `{remaining, changed, garbage, swept session, swept epoch, ...}`, `remaining` counting the
/// node's sessions still in their grace.
const REAP_USER: &str = r#"
local meta, sess = KEYS[1], KEYS[2]
local dead, grace, user = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local retention, channel = tonumber(ARGV[4]), ARGV[5]
if not (grace and retention) then
  return redis.error_reply('ERR presence-tracker reap: bad arguments')
end
local ms, us = clock()
local garbage = foreign(meta, 'hash') + foreign(sess, 'hash')
local all = redis.call('HGETALL', sess)
local remaining = 0
for i = 1, #all, 2 do
  local en = parse(all[i + 1])
  if en and en.node == dead then
    if en.d == 0 then
      redis.call('HSET', sess, all[i], entry(en.e, en.node, en.p, ms + grace, en.ls))
      remaining = remaining + 1
    elseif en.d > ms then
      remaining = remaining + 1
    end
  end
end
local out = {}
local changed, g = settle(meta, sess, ms, us, user, 'x', dead, retention, channel, out)
local res = { int(remaining), changed, garbage + g }
for i = 1, #out do res[#res + 1] = out[i] end
return res
"#;

/// `own`: who owns a session id, and its epoch.
///
/// KEYS: owner record. ARGV: op (`connect`: a new epoch; `reassert`: keep the given epoch
/// unless a newer one exists; `disown`: delete if the user and epoch still hold), user,
/// epoch, TTL ms. Returns `{status, epoch, garbage}`, status `ok`, `taken` (another user owns
/// the id) or `superseded` (a newer epoch exists: returned).
const OWN: &str = r#"
local key, op, user, want, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if not (want and ttl) then
  return redis.error_reply('ERR presence-tracker own: bad arguments')
end
local garbage = foreign(key, 'hash')
local m = redis.call('HMGET', key, 'u', 'e')
local owner, e = m[1], tonumber(m[2])
if not (owner and e) then
  if m[1] or m[2] then garbage = garbage + 1 end
  owner, e = nil, nil
end
if op == 'disown' then
  if owner == user and e == want then redis.call('DEL', key) end
  return { 'ok', '0', garbage }
end
if owner and owner ~= user then return { 'taken', '0', garbage } end
local _, us = clock()
local ne
if op == 'connect' then
  ne = math.max((e or 0) + 1, us)
elseif op == 'reassert' then
  if e and e > want then return { 'superseded', int(e), garbage } end
  ne = want
else
  return redis.error_reply('ERR presence-tracker own: unknown op')
end
redis.call('HSET', key, 'u', user, 'e', int(ne))
redis.call('PEXPIRE', key, ttl)
return { 'ok', int(ne), garbage }
"#;

/// `lease`: the `{c}` keys: generation, leases, cleanup jobs.
///
/// KEYS: gen, leases, reap, tick. ARGV: op, node, a number (lease ms, job ms or delay),
/// the generation (expected, or proposed on `register`), stall ms. Every call first moves
/// the leases forward by the time no lease call reached Redis, if that exceeds the stall
/// bound. Returns `{status, value, now ms, garbage, shifted ms}`:
///
/// - `register`: `ok`, the generation (the proposed one if there was none);
/// - `renew`: `ok` and the generation, `gen` and the current one (Redis was wiped or
///   another deployment shares the prefix), or `lost` (the lease is gone: declared dead);
/// - `reap`: `dead` or `due` and a node whose cleanup the caller now holds for the job ms,
///   or `none`; only a node with a valid lease may reap;
/// - `schedule` (the job is due after the delay), `done`, `retire` (the caller's lease
///   becomes a job due after the delay): `ok`.
const LEASE: &str = r#"
local gen, leases, reap, tick = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, node, n, g0, stall = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
if not (n and stall) then
  return redis.error_reply('ERR presence-tracker lease: bad arguments')
end
local ms = clock()
local garbage = foreign(gen, 'string') + foreign(leases, 'zset') + foreign(reap, 'zset')
  + foreign(tick, 'string')
local last = tonumber(redis.call('GET', tick))
if redis.call('EXISTS', tick) == 1 and not last then garbage = garbage + 1 end
local shifted = 0
if last and ms - last > stall then
  shifted = ms - last
  local all = redis.call('ZRANGE', leases, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    redis.call('ZADD', leases, (tonumber(all[i + 1]) or ms) + shifted, all[i])
  end
end
redis.call('SET', tick, int(ms))
local function reply(status, value) return { status, value, int(ms), garbage, int(shifted) } end
if op == 'register' then
  local g = redis.call('GET', gen)
  if not g then
    g = g0
    redis.call('SET', gen, g)
  end
  redis.call('ZADD', leases, ms + n, node)
  return reply('ok', g)
elseif op == 'renew' then
  local g = redis.call('GET', gen)
  if g ~= g0 then return reply('gen', g or '') end
  if not redis.call('ZSCORE', leases, node) then return reply('lost', '') end
  redis.call('ZADD', leases, ms + n, node)
  return reply('ok', g)
elseif op == 'reap' then
  local mine = tonumber(redis.call('ZSCORE', leases, node))
  if not mine or mine < ms then return reply('none', '') end
  local d = redis.call('ZRANGEBYSCORE', leases, '-inf', '(' .. int(ms), 'LIMIT', 0, 1)
  if d[1] then
    redis.call('ZREM', leases, d[1])
    redis.call('ZADD', reap, ms + n, d[1])
    return reply('dead', d[1])
  end
  local j = redis.call('ZRANGEBYSCORE', reap, '-inf', int(ms), 'LIMIT', 0, 1)
  if j[1] then
    redis.call('ZADD', reap, ms + n, j[1])
    return reply('due', j[1])
  end
  return reply('none', '')
elseif op == 'schedule' then
  if redis.call('ZSCORE', reap, node) then redis.call('ZADD', reap, ms + n, node) end
  return reply('ok', '')
elseif op == 'done' then
  redis.call('ZREM', reap, node)
  return reply('ok', '')
elseif op == 'retire' then
  redis.call('ZREM', leases, node)
  redis.call('ZADD', reap, ms + n, node)
  return reply('ok', '')
end
return redis.error_reply('ERR presence-tracker lease: unknown op')
"#;

/// One of the scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Script {
    Write,
    ReapUser,
    Own,
    Lease,
    Room,
    ReapRoom,
}

impl Script {
    pub(crate) const ALL: [Script; 6] = [
        Script::Write,
        Script::ReapUser,
        Script::Own,
        Script::Lease,
        Script::Room,
        Script::ReapRoom,
    ];

    fn body(self) -> &'static str {
        match self {
            Script::Write => WRITE,
            Script::ReapUser => REAP_USER,
            Script::Own => OWN,
            Script::Lease => LEASE,
            Script::Room => ROOM,
            Script::ReapRoom => REAP_ROOM,
        }
    }
}

/// The scripts' sources and SHA1s, made once per node.
#[derive(Debug)]
pub(crate) struct Scripts {
    compiled: Vec<redis::Script>,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            compiled: Script::ALL
                .iter()
                .map(|s| redis::Script::new(&format!("{PRELUDE}{}", s.body())))
                .collect(),
        }
    }

    pub(crate) fn get(&self, script: Script) -> &redis::Script {
        &self.compiled[script as usize]
    }
}
