//! The lease task: renewal (and what a renewal finds out: a wiped Redis, a lost lease), and
//! the cleanup of lapsed and retired nodes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::millis;
use super::id::ClusterId;
use super::node::{random_id, Shared};
use super::redis_io::{num, text, Call};
use super::scripts::Script;
use super::status::{Counters, Part};
use super::ClusterMeta;
use super::{ClusterError, Diagnostic};

/// Jobs one reap pass takes at most.
const JOBS_PER_PASS: usize = 8;
/// Users one pipeline of a cleanup visits.
const USERS_PER_PIPELINE: usize = 256;

/// A `lease` script's reply.
#[derive(Debug)]
pub(crate) struct LeaseReply {
    pub(crate) status: String,
    pub(crate) value: String,
}

impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> Shared<U, S, R, M> {
    /// Calls the `lease` script for `node` with its number argument.
    pub(crate) async fn lease_call(
        &self,
        op: &str,
        node: &str,
        n: u64,
    ) -> Result<LeaseReply, ClusterError> {
        let generation = self.identity.read().generation.clone();
        let proposed = if op == "register" {
            random_id()
        } else {
            generation
        };
        let call = Call::script(
            Script::Lease,
            vec![
                self.keys.gen.clone(),
                self.keys.leases.clone(),
                self.keys.reap.clone(),
                self.keys.tick.clone(),
            ],
            vec![
                op.into(),
                node.into(),
                n.to_string(),
                proposed,
                millis(self.config.stall()).to_string(),
            ],
        );
        let replies = self.io.run(&[call]).await?;
        let reply = match replies.first() {
            Some(Ok(items)) => items,
            Some(Err(e)) => return Err(ClusterError::Redis(format!("lease {op}: {e}"))),
            None => return Err(ClusterError::Protocol("no reply to lease".into())),
        };
        let status = text(reply.first())
            .ok_or_else(|| ClusterError::Protocol(format!("lease {op}: {reply:?}")))?;
        self.count_garbage(num(reply.get(3)), "a {c} key");
        if let Some(gap) = num(reply.get(4)).filter(|&g| g > 0) {
            Counters::add(&self.counters.stalls, 1);
            self.config.diagnose(Diagnostic::Stall { millis: gap });
        }
        Ok(LeaseReply {
            status,
            value: text(reply.get(1)).unwrap_or_default(),
        })
    }

    /// Registers this node's current id with a lease; learns the generation.
    pub(crate) async fn register(&self) -> Result<(), ClusterError> {
        let node = self.node();
        let sent = Instant::now();
        let reply = self
            .lease_call("register", &node, millis(self.config.lease_ttl))
            .await?;
        self.identity.write().generation = reply.value;
        self.lease_valid_from(sent);
        Ok(())
    }

    /// Registers again under a new id and re-publishes every session.
    async fn reregister(&self, reason: &'static str) -> Result<(), ClusterError> {
        self.identity.write().node = random_id();
        self.register().await?;
        let n = self.mirror.lock().reassert_all();
        Counters::add(&self.counters.republished, n as u64);
        Counters::add(&self.counters.reregistrations, 1);
        self.config.diagnose(Diagnostic::Reregistered {
            reason,
            node: self.node(),
        });
        self.wake_writer.notify_one();
        self.kick_feed.notify_one();
        Ok(())
    }

    /// Renews the lease; registers again if Redis was wiped or the lease was lost.
    async fn renew(&self) -> Result<(), ClusterError> {
        let node = self.node();
        let sent = Instant::now();
        let reply = self
            .lease_call("renew", &node, millis(self.config.lease_ttl))
            .await?;
        match reply.status.as_str() {
            "ok" => {
                self.lease_valid_from(sent);
                Ok(())
            }
            "gen" => self.reregister("generation").await,
            "lost" => self.reregister("lease lost").await,
            other => Err(ClusterError::Protocol(format!("lease renew: {other}"))),
        }
    }

    /// Renews the lease every third of its TTL (sooner after a failure, with backoff).
    pub(crate) async fn run_lease(self: Arc<Self>) {
        let renew_every = self.config.renew_interval();
        let mut next = tokio::time::Instant::now() + renew_every;
        let mut backoff = Duration::from_millis(50);
        loop {
            tokio::time::sleep_until(next).await;
            self.unless_stalled().await;
            let now = tokio::time::Instant::now();
            match self.renew().await {
                Ok(()) => {
                    if !self.lease_ok.swap(true, Ordering::AcqRel) {
                        // Back after a failure: the feed may have missed messages.
                        self.kick_feed.notify_one();
                    }
                    backoff = Duration::from_millis(50);
                    self.recovered(Part::Lease);
                    next = now + renew_every;
                }
                Err(e) => {
                    self.lease_ok.store(false, Ordering::Release);
                    self.failed(Part::Lease, e.to_string());
                    next = now + backoff.min(renew_every);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// Looks for cleanup jobs every reap interval, while the lease is valid: a task of its
    /// own, so a long cleanup never delays a renewal.
    pub(crate) async fn run_reaper(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.config.reap_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.unless_stalled().await;
            if !self.lease_ok.load(Ordering::Acquire) {
                continue;
            }
            match self.reap_pass().await {
                Ok(()) => self.recovered(Part::Reaper),
                Err(e) => self.failed(Part::Reaper, e.to_string()),
            }
        }
    }

    /// Claims and works the cleanup jobs that are there.
    async fn reap_pass(&self) -> Result<(), ClusterError> {
        let me = self.node();
        let lease = millis(self.config.lease_ttl);
        for _ in 0..JOBS_PER_PASS {
            let job = self.lease_call("reap", &me, lease).await?;
            match job.status.as_str() {
                "dead" => {
                    Counters::add(&self.counters.nodes_reaped, 1);
                    self.config.diagnose(Diagnostic::Reaped {
                        node: job.value.clone(),
                    });
                }
                "due" => {}
                _ => return Ok(()),
            }
            let dead = job.value;
            if self.reap_node(&dead).await? > 0 {
                let grace = millis(self.config.disconnect_grace);
                self.lease_call("schedule", &dead, grace).await?;
            } else {
                self.io
                    .cmd::<redis::Value>(
                        redis::cmd("DEL")
                            .arg(self.keys.node_users(&dead))
                            .arg(self.keys.node_rooms(&dead)),
                    )
                    .await?;
                self.lease_call("done", &dead, 0).await?;
            }
        }
        Ok(())
    }

    /// Gives `node`'s sessions the grace and removes those whose grace ran out, user by user
    /// and room by room; returns how many are still in their grace.
    pub(crate) async fn reap_node(&self, node: &str) -> Result<u64, ClusterError> {
        Ok(self.reap_users(node).await? + self.reap_rooms(node).await?)
    }

    async fn reap_users(&self, node: &str) -> Result<u64, ClusterError> {
        let grace = millis(self.config.disconnect_grace).to_string();
        let retention = millis(self.config.retention).to_string();
        self.reap_index(&self.keys.node_users(node), |u| {
            let call = Call::script(
                Script::ReapUser,
                vec![self.keys.user(u), self.keys.sessions(u)],
                vec![
                    node.into(),
                    grace.clone(),
                    u.into(),
                    retention.clone(),
                    self.keys.channel.clone(),
                ],
            );
            // Sessions whose grace ran out release their owner records.
            Some((call, Some(u.to_owned())))
        })
        .await
    }

    async fn reap_rooms(&self, node: &str) -> Result<u64, ClusterError> {
        let grace = millis(self.config.disconnect_grace).to_string();
        let retention = millis(self.config.retention).to_string();
        self.reap_index(&self.keys.node_rooms(node), |entry| {
            let (room, user) = entry.split_once('|')?;
            let call = Call::script(
                Script::ReapRoom,
                vec![
                    self.keys.room(room),
                    self.keys.room_members(room),
                    self.keys.room_sessions(room, user),
                ],
                vec![
                    node.into(),
                    grace.clone(),
                    room.into(),
                    user.into(),
                    retention.clone(),
                    self.keys.room_channel.clone(),
                ],
            );
            Some((call, None))
        })
        .await
    }

    /// Runs a reap script for each member of a node's index (`SSCAN`, pipelined), removes the
    /// members with nothing left in their grace, releases the owner records of expired
    /// sessions (for calls naming their user); returns how many are still in their grace.
    async fn reap_index(
        &self,
        index: &str,
        call_of: impl Fn(&str) -> Option<(Call, Option<String>)>,
    ) -> Result<u64, ClusterError> {
        let mut remaining = 0;
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SSCAN");
            cmd.arg(index)
                .arg(cursor)
                .arg("COUNT")
                .arg(USERS_PER_PIPELINE);
            let (next, members): (u64, Vec<String>) = self.io.cmd(&cmd).await?;
            let mut calls = Vec::with_capacity(members.len());
            let mut done = vec![index.to_owned()];
            for member in members {
                match call_of(&member) {
                    Some((call, owner)) => calls.push((member, call, owner)),
                    None => {
                        self.garbage(format!("{member:?} in {index:?}"));
                        done.push(member);
                    }
                }
            }
            let script_calls: Vec<Call> = calls.iter().map(|(_, c, _)| c.clone()).collect();
            let replies = self.io.run(&script_calls).await?;
            let mut follow = Vec::new();
            for ((member, _, owner), reply) in calls.into_iter().zip(&replies) {
                let Some(reply) = self.reply(Some(reply), "reap") else {
                    remaining += 1;
                    continue;
                };
                self.count_garbage(num(reply.get(2)), "a reaped hash");
                match num(reply.first()) {
                    Some(0) => done.push(member),
                    Some(n) => remaining += n,
                    None => remaining += 1,
                }
                let Some(user) = owner else { continue };
                for pair in reply.get(3..).unwrap_or_default().chunks(2) {
                    if let (Some(s), Some(e)) = (text(pair.first()), text(pair.get(1))) {
                        follow.push(Call::script(
                            Script::Own,
                            vec![self.keys.owner(&s)],
                            vec!["disown".into(), user.clone(), e, "1".into()],
                        ));
                    }
                }
            }
            if done.len() > 1 {
                follow.push(Call::plain("SREM", done));
            }
            self.io.run(&follow).await?;
            cursor = next;
            if cursor == 0 {
                return Ok(remaining);
            }
        }
    }
}
