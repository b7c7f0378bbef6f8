//! The writer task: takes each session's pending write from the mirror and sends them in
//! pipelines: ownership and epochs (`own`, one `{s:..}` slot each), then the sessions (`write`,
//! one `{u:..}` slot each), then what ended (`disown`, `SREM`).

use std::sync::Arc;
use std::time::Duration;

use super::config::millis;
use super::feed::{ClusterEvent, Refusal, RefusalReason};
use super::id::{encode, ClusterId};
use super::message::digit;
use super::mirror::{Op, Outcome, Pending};
use super::node::Shared;
use super::redis_io::{num, text, Call, Reply};
use super::scripts::Script;
use super::status::{Counters, Part};
use super::ClusterError;
use super::ClusterMeta;

/// Sessions written per pipeline.
const BATCH: usize = 256;
/// The first wait after a failure; it doubles up to the configured maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> Shared<U, S, R, M> {
    pub(crate) async fn run_writer(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            self.unless_stalled().await;
            self.until_lease_valid().await;
            let mut gone = Vec::new();
            let ops = self.mirror.lock().take(BATCH, &mut gone);
            if ops.is_empty() && gone.is_empty() {
                self.written.notify_waiters();
                self.wake_writer.notified().await;
                continue;
            }
            let result = match self.write(&ops, gone).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let mut mirror = self.mirror.lock();
                    for op in &ops {
                        mirror.done(op, Outcome::Failed, false);
                    }
                    Err(e)
                }
            };
            self.written.notify_waiters();
            match result {
                Ok(()) => {
                    self.recovered(Part::Writer);
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    self.failed(Part::Writer, e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// One batch. On `Err` none of the ops was applied to the mirror (the caller fails them).
    async fn write(&self, ops: &[Op<U, S>], mut gone: Vec<U>) -> Result<(), ClusterError> {
        let node = self.node();
        let index = self.keys.node_users(&node);
        let users: Vec<String> = ops.iter().map(|op| encode(&op.user)).collect();
        let sessions: Vec<String> = ops.iter().map(|op| encode(&op.session)).collect();
        let mut epochs: Vec<Option<u64>> = ops.iter().map(|op| op.epoch).collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; ops.len()];
        let mut refusals = Vec::new();

        // Ownership and epochs of the claims.
        let claims: Vec<usize> = (0..ops.len())
            .filter(|&i| matches!(ops[i].kind, Pending::Claim | Pending::Reassert))
            .collect();
        let mut calls = Vec::with_capacity(2 * claims.len());
        for &i in &claims {
            let (mode, epoch) = match ops[i].kind {
                Pending::Reassert => ("reassert", ops[i].epoch.unwrap_or(0)),
                _ => ("connect", 0),
            };
            calls.push(Call::plain("SADD", vec![index.clone(), users[i].clone()]));
            calls.push(Call::script(
                Script::Own,
                vec![self.keys.owner(&sessions[i])],
                vec![
                    mode.into(),
                    users[i].clone(),
                    epoch.to_string(),
                    millis(self.config.ownership_ttl).to_string(),
                ],
            ));
        }
        // Before any room entry exists, the cleanup can find it.
        let room_index = self.keys.node_rooms(&node);
        let mut joined = vec![room_index];
        for (i, op) in ops.iter().enumerate() {
            for (room, meta) in &op.rooms {
                if meta.is_some() {
                    joined.push(format!("{room}|{}", users[i]));
                }
            }
        }
        if joined.len() > 1 {
            calls.push(Call::plain("SADD", joined));
        }
        let replies = self.io.run(&calls).await?;
        for (k, &i) in claims.iter().enumerate() {
            let reply = self.reply(replies.get(2 * k + 1), "own");
            let status = reply.as_ref().and_then(|r| text(r.first()));
            match status.as_deref() {
                Some("ok") => match reply.as_ref().and_then(|r| num(r.get(1))) {
                    Some(epoch) => epochs[i] = Some(epoch),
                    None => outcomes[i] = Some(Outcome::Failed),
                },
                Some("taken") => {
                    outcomes[i] = Some(Outcome::Refused);
                    refusals.push((i, RefusalReason::Taken));
                }
                Some("superseded") => {
                    outcomes[i] = Some(Outcome::Refused);
                    refusals.push((i, RefusalReason::Superseded));
                }
                _ => outcomes[i] = Some(Outcome::Failed),
            }
        }

        // The sessions, each in its user's slot, and their rooms, each in the room's slot.
        let retention = millis(self.config.retention).to_string();
        let mut writing = Vec::new();
        let mut calls = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let Some(epoch) = epochs[i] else {
                outcomes[i] = Some(Outcome::Failed);
                continue;
            };
            let letter = match op.kind {
                Pending::Claim | Pending::Reassert => "c",
                Pending::Put => "p",
                Pending::Drop => "d",
                Pending::None => {
                    outcomes[i] = Some(Outcome::Applied);
                    continue;
                }
            };
            writing.push(i);
            calls.push(Call::script(
                Script::Write,
                vec![self.keys.user(&users[i]), self.keys.sessions(&users[i])],
                vec![
                    letter.into(),
                    sessions[i].clone(),
                    epoch.to_string(),
                    node.clone(),
                    digit(op.presence).to_string(),
                    op.last_seen.min(1 << 53).to_string(),
                    users[i].clone(),
                    retention.clone(),
                    self.keys.channel.clone(),
                ],
            ));
        }
        let mut room_calls: Vec<(usize, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let Some(epoch) = epochs[i] else { continue };
            if matches!(outcomes[i], Some(Outcome::Refused | Outcome::Failed)) {
                continue;
            }
            for (room, meta) in &op.rooms {
                room_calls.push((i, calls.len()));
                calls.push(Call::script(
                    Script::Room,
                    vec![
                        self.keys.room(room),
                        self.keys.room_members(room),
                        self.keys.room_sessions(room, &users[i]),
                    ],
                    vec![
                        if meta.is_some() { "j" } else { "l" }.into(),
                        sessions[i].clone(),
                        epoch.to_string(),
                        node.clone(),
                        digit(op.presence).to_string(),
                        meta.clone().unwrap_or_default(),
                        room.clone(),
                        users[i].clone(),
                        retention.clone(),
                        self.keys.room_channel.clone(),
                    ],
                ));
            }
        }
        let replies = self.io.run(&calls).await?;
        let mut rooms_written = vec![true; ops.len()];
        let mut disown: Vec<(String, String, String)> = Vec::new();
        for (k, &i) in writing.iter().enumerate() {
            let Some(reply) = self.reply(replies.get(k), "write") else {
                outcomes[i] = Some(Outcome::Failed);
                continue;
            };
            self.count_garbage(num(reply.get(3)), "a user's hashes");
            for pair in reply.get(4..).unwrap_or_default().chunks(2) {
                if let (Some(s), Some(e)) = (text(pair.first()), text(pair.get(1))) {
                    disown.push((self.keys.owner(&s), users[i].clone(), e));
                }
            }
            let epoch = epochs[i].unwrap_or(0);
            outcomes[i] = Some(match text(reply.first()).as_deref() {
                Some("ok") if matches!(ops[i].kind, Pending::Claim | Pending::Reassert) => {
                    Outcome::Claimed(epoch)
                }
                Some("ok") => Outcome::Applied,
                Some("dropped") => {
                    disown.push((
                        self.keys.owner(&sessions[i]),
                        users[i].clone(),
                        epoch.to_string(),
                    ));
                    Outcome::Applied
                }
                Some("superseded") if !ops[i].detached => {
                    refusals.push((i, RefusalReason::Superseded));
                    Outcome::Refused
                }
                Some("superseded") => Outcome::Applied,
                Some("unknown") => Outcome::Unknown,
                _ => Outcome::Failed,
            });
        }
        for &(i, k) in &room_calls {
            match self.reply(replies.get(k), "room") {
                // `superseded`: the session's newer owner holds the room entry.
                Some(reply) => self.count_garbage(num(reply.get(2)), "a room's hashes"),
                None => rooms_written[i] = false,
            }
        }

        // The mirror learns the outcomes; the sessions it gave up are reported (a refused
        // write of a session that connected here again meanwhile is not: its claim follows).
        let (mut applied, refused) = (0, refusals.len() as u64);
        let mut given_up = vec![false; ops.len()];
        {
            let mut mirror = self.mirror.lock();
            for (i, op) in ops.iter().enumerate() {
                let outcome = outcomes[i].unwrap_or(Outcome::Failed);
                if matches!(outcome, Outcome::Claimed(_) | Outcome::Applied) {
                    applied += 1;
                }
                let done = mirror.done(op, outcome, rooms_written[i]);
                given_up[i] = done.given_up;
                gone.extend(done.gone);
            }
        }
        Counters::add(&self.counters.writes, applied);
        Counters::add(&self.counters.refused, refused);
        for (i, reason) in refusals {
            if given_up[i] {
                self.emit(ClusterEvent::Refused(Refusal {
                    user: ops[i].user.clone(),
                    session: ops[i].session.clone(),
                    reason,
                }));
            }
        }

        // Ownership of ended sessions released; users without sessions here leave the index.
        let mut calls: Vec<Call> = disown
            .into_iter()
            .map(|(key, user, epoch)| {
                Call::script(
                    Script::Own,
                    vec![key],
                    vec!["disown".into(), user, epoch, "1".into()],
                )
            })
            .collect();
        if !gone.is_empty() {
            let mut args = vec![index];
            args.extend(gone.iter().map(encode));
            calls.push(Call::plain("SREM", args));
        }
        self.io.run(&calls).await?;
        Ok(())
    }

    /// A script's reply, or `None` (counted, reported) if Redis answered an error.
    pub(crate) fn reply<'r>(
        &self,
        reply: Option<&'r Reply>,
        script: &str,
    ) -> Option<&'r Vec<redis::Value>> {
        match reply? {
            Ok(items) => Some(items),
            Err(e) => {
                self.failed(Part::Writer, format!("{script}: {e}"));
                None
            }
        }
    }

    pub(crate) fn count_garbage(&self, n: Option<u64>, at: &str) {
        if let Some(n) = n.filter(|&n| n > 0) {
            for _ in 0..n {
                self.garbage(format!("{at} in redis"));
            }
        }
    }
}
