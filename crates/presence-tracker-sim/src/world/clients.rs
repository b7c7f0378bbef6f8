//! What clients and networks do: visits, phases, heartbeat timers, reloads, partitions, the
//! server noticing dead connections, restarts.
//!
//! Every handler updates the ground truth *before* it signals the tracker, so the tracker's
//! events are judged against the truth of their instant.

use std::mem;

use presence_tracker::{Activity, DisconnectKind};

use super::{activity, End, Kind, Server, Session, Truth, World};
use crate::scenario::Client;

impl<S: Server> World<'_, S> {
    // # Visits

    pub(super) fn arrive(&mut self, u: usize) {
        if self.arrivals_closed || self.users[u].in_visit {
            return;
        }
        let now = self.now;
        let pop = &self.pops[self.users[u].pop];
        let user = &mut self.users[u];
        user.visit += 1;
        user.in_visit = true;
        let length = (pop.visit.draw(&mut user.world) as f64 * user.first_visit) as u64;
        user.first_visit = 1.0;
        user.planned_end = now + length.max(1000);
        let tabs = user.world.int(pop.tabs[0], pop.tabs[1]);
        let first_phase = pop.active.draw(&mut user.world);
        let first_reload =
            (pop.reload_every > 0.0).then(|| user.world.exp(pop.reload_every) as u64);
        let (visit, planned_end, partitioned) = (user.visit, user.planned_end, user.partitioned);
        for tab in 0..tabs {
            let s = self.sessions.len() as u32;
            self.sessions.push(Session {
                user: u as u32,
                truth: if tab == 0 {
                    Truth::Active
                } else {
                    Truth::Hidden
                },
                opened_at: now,
                hidden_since: now,
                suspended: false,
                conn: 0,
                conn_alive: false,
                connecting: false,
                closed_clean: false,
                hb_gen: 0,
                loss_gen: 0,
                loss_pending: false,
            });
            self.users[u].sessions.push(s);
        }
        self.refresh_truth(u, false);
        if !partitioned {
            // A partitioned client connects when its network comes back.
            for i in 0..self.users[u].sessions.len() {
                let s = self.users[u].sessions[i] as usize;
                self.connect(s);
            }
        }
        let user = u as u32;
        if now + first_phase < planned_end {
            self.push(now + first_phase, Kind::Phase { user, visit });
        }
        self.push(planned_end, Kind::VisitEnd { user, visit });
        if let Some(after) = first_reload {
            if now + after < planned_end {
                self.push(now + after, Kind::Reload { user, visit });
            }
        }
    }

    fn current(&self, u: usize, visit: u32) -> bool {
        let user = &self.users[u];
        user.in_visit && user.visit == visit
    }

    pub(super) fn on_visit_end(&mut self, u: usize, visit: u32) {
        if !self.current(u, visit) {
            return;
        }
        let pop = &self.pops[self.users[u].pop];
        let (close_frame, client) = (pop.close_frame, pop.client);
        let end = if self.users[u].world.chance(close_frame) {
            End::Close
        } else if client == Client::Mobile {
            End::Suspend
        } else {
            End::Lost
        };
        self.end_visit(u, end);
    }

    pub(super) fn end_visit(&mut self, u: usize, end: End) {
        if !self.users[u].in_visit {
            return;
        }
        let now = self.now;
        let user = &mut self.users[u];
        user.in_visit = false;
        let partitioned = user.partitioned;
        let sessions = mem::take(&mut user.sessions);
        let closes = |session: &Session| {
            end == End::Close && session.conn_alive && !partitioned && !session.suspended
        };
        // Clean only if every session says goodbye now or already did (a reload in progress).
        let lost = end != End::Close
            || sessions.iter().any(|&s| {
                let session = &self.sessions[s as usize];
                !closes(session) && !session.closed_clean
            });
        for &s in &sessions {
            let session = &mut self.sessions[s as usize];
            session.truth = Truth::Gone;
            session.hb_gen += 1;
            self.session_ms += now.saturating_sub(session.opened_at);
        }
        // The truth leaves first: what the tracker does next is judged against a departure.
        self.books.on_truth(u, Truth::Gone, now, lost);
        for &s in &sessions {
            let s = s as usize;
            if closes(&self.sessions[s]) {
                self.sessions[s].conn_alive = false;
                let conn = self.sessions[s].conn;
                self.disconnect(s, conn, DisconnectKind::Clean);
                continue;
            }
            if end == End::Suspend && !self.sessions[s].suspended {
                let p = self.pops[self.users[u].pop].background_signal;
                if self.users[u].noise.chance(p) {
                    self.send_heartbeat(s, Activity::Background);
                }
            }
            self.set_unreachable(s);
        }
        if !self.arrivals_closed {
            let pop = &self.pops[self.users[u].pop];
            let gap = pop.gap.draw(&mut self.users[u].world);
            self.push(now + gap.max(1000), Kind::Arrive { user: u as u32 });
        }
    }

    pub(super) fn on_exodus(&mut self) {
        self.arrivals_closed = true;
        let close = self.scenario.exodus.as_ref().is_some_and(|e| e.close_frame);
        for u in 0..self.users.len() {
            self.end_visit(u, if close { End::Close } else { End::Lost });
        }
    }

    // # The focused session's phases

    fn schedule_phase(&mut self, u: usize, after: u64) {
        let user = &self.users[u];
        let (at, visit) = (self.now + after.max(1), user.visit);
        if at < user.planned_end {
            self.push(
                at,
                Kind::Phase {
                    user: u as u32,
                    visit,
                },
            );
        }
    }

    pub(super) fn on_phase(&mut self, u: usize, visit: u32) {
        if !self.current(u, visit) {
            return;
        }
        let f = self.users[u].sessions[0] as usize;
        let pop = &self.pops[self.users[u].pop];
        let user = &mut self.users[u];
        match self.sessions[f].truth {
            Truth::Active => {
                if user.world.chance(pop.hide_share) {
                    self.hide(u, f);
                } else {
                    let next = pop.idle.draw(&mut user.world);
                    self.switch_focus(u, f, Truth::Idle, Activity::Idle, next);
                }
            }
            Truth::Idle => {
                let next = pop.active.draw(&mut user.world);
                self.switch_focus(u, f, Truth::Active, Activity::Active, next);
            }
            Truth::Hidden => {
                let next = pop.active.draw(&mut user.world);
                let mobile = pop.client == Client::Mobile;
                let session = &mut self.sessions[f];
                session.truth = Truth::Active;
                session.suspended = false;
                self.refresh_truth(u, false);
                if mobile {
                    self.set_reachable(f, true);
                } else {
                    self.send_heartbeat(f, Activity::Active);
                    self.restart_timer(f);
                }
                self.schedule_phase(u, next);
            }
            Truth::Gone => {}
        }
    }

    /// The focused session goes to the background: a hidden tab, or a suspended app.
    /// The user at focused session `f` goes idle or comes back while the tab stays visible: the
    /// client reports it at once, and the next phase starts in `next`.
    fn switch_focus(&mut self, u: usize, f: usize, truth: Truth, activity: Activity, next: u64) {
        self.sessions[f].truth = truth;
        self.refresh_truth(u, false);
        self.send_heartbeat(f, activity);
        self.restart_timer(f);
        self.schedule_phase(u, next);
    }

    fn hide(&mut self, u: usize, f: usize) {
        let pop = &self.pops[self.users[u].pop];
        let (mobile, signal) = (pop.client == Client::Mobile, pop.background_signal);
        let user = &mut self.users[u];
        let length = pop.hidden.draw(&mut user.world);
        if mobile && self.now + length >= user.planned_end {
            // It would not resume before the visit ends: it never resumes.
            self.end_visit(u, End::Suspend);
            return;
        }
        let session = &mut self.sessions[f];
        session.truth = Truth::Hidden;
        session.hidden_since = self.now;
        self.refresh_truth(u, false);
        if mobile {
            if self.users[u].noise.chance(signal) {
                self.send_heartbeat(f, Activity::Background);
            }
            self.sessions[f].suspended = true;
            self.sessions[f].hb_gen += 1;
            self.set_unreachable(f);
        } else {
            self.send_heartbeat(f, Activity::Background);
            self.restart_timer(f);
        }
        self.schedule_phase(u, length);
    }

    pub(super) fn on_reload(&mut self, u: usize, visit: u32) {
        if !self.current(u, visit) {
            return;
        }
        let pop = &self.pops[self.users[u].pop];
        let (reload_every, reload) = (pop.reload_every, pop.reload);
        let next = self.users[u].world.exp(reload_every) as u64;
        let (at, planned_end) = (self.now + next.max(1), self.users[u].planned_end);
        if at < planned_end {
            self.push(
                at,
                Kind::Reload {
                    user: u as u32,
                    visit,
                },
            );
        }
        let f = self.users[u].sessions[0] as usize;
        let session = &self.sessions[f];
        let foreground = matches!(session.truth, Truth::Active | Truth::Idle);
        if !foreground || !session.conn_alive || session.connecting || self.users[u].partitioned {
            return;
        }
        let delay = reload.draw(&mut self.users[u].noise);
        let session = &mut self.sessions[f];
        session.conn_alive = false;
        session.loss_pending = false;
        session.connecting = true;
        session.closed_clean = true;
        let conn = session.conn;
        self.disconnect(f, conn, DisconnectKind::Clean);
        self.push(self.now + delay, Kind::Connect { session: f as u32 });
    }

    // # Heartbeat timers and connections

    /// The next heartbeat interval: the foreground one, or for a hidden tab the background
    /// one, rounded up to the throttle once the browser throttles; with jitter.
    fn interval(&mut self, s: usize) -> u64 {
        let session = &self.sessions[s];
        let u = session.user as usize;
        let pop = &self.pops[self.users[u].pop];
        let base = if session.truth == Truth::Hidden && pop.client == Client::Browser {
            let throttled = self.now.saturating_sub(session.hidden_since) >= pop.throttle_after;
            if throttled && self.timer_driven {
                self.background_heartbeat.div_ceil(pop.throttle) * pop.throttle
            } else {
                self.background_heartbeat
            }
        } else {
            self.heartbeat
        };
        let jitter = pop.jitter;
        let factor = 1.0 + self.users[u].noise.uniform(-jitter, jitter);
        ((base as f64 * factor).round() as u64).max(1)
    }

    pub(super) fn restart_timer(&mut self, s: usize) {
        self.sessions[s].hb_gen += 1;
        let gen = self.sessions[s].hb_gen;
        let after = self.interval(s);
        self.push(
            self.now + after,
            Kind::Heartbeat {
                session: s as u32,
                gen,
            },
        );
    }

    pub(super) fn on_heartbeat(&mut self, s: usize, gen: u32) {
        let session = &self.sessions[s];
        if session.hb_gen != gen || session.truth == Truth::Gone || session.suspended {
            return;
        }
        let now_activity = activity(session.truth);
        self.send_heartbeat(s, now_activity);
        let after = self.interval(s);
        self.push(
            self.now + after,
            Kind::Heartbeat {
                session: s as u32,
                gen,
            },
        );
    }

    pub(super) fn on_connect(&mut self, s: usize) {
        let session = &mut self.sessions[s];
        session.connecting = false;
        let u = session.user as usize;
        if session.truth == Truth::Gone
            || session.suspended
            || session.conn_alive
            || self.users[u].partitioned
        {
            return; // an unreachable client connects when it can again
        }
        self.connect(s);
    }

    /// The client stopped answering: the server will notice after the ping timeout, unless it
    /// answers again before.
    pub(super) fn set_unreachable(&mut self, s: usize) {
        let session = &self.sessions[s];
        if !session.conn_alive || session.loss_pending {
            return;
        }
        let u = session.user as usize;
        let timeout = self.pops[self.users[u].pop]
            .ping_timeout
            .draw(&mut self.users[u].noise)
            .max(1);
        let session = &mut self.sessions[s];
        session.loss_gen += 1;
        session.loss_pending = true;
        let gen = session.loss_gen;
        self.push(
            self.now + timeout,
            Kind::LossNotice {
                session: s as u32,
                gen,
            },
        );
    }

    /// The client can talk again: its connection survived (then `heartbeat_now` sends its
    /// state at once), or it reconnects after its backoff.
    fn set_reachable(&mut self, s: usize, heartbeat_now: bool) {
        let session = &mut self.sessions[s];
        session.loss_pending = false;
        if session.conn_alive {
            if heartbeat_now {
                self.send_heartbeat(s, activity(self.sessions[s].truth));
                self.restart_timer(s);
            }
        } else if !session.connecting {
            session.connecting = true;
            let delay = self.reconnect_delay(s);
            self.push(self.now + delay, Kind::Connect { session: s as u32 });
        }
    }

    /// How long a client waits to reconnect once it can: its backoff, or longer for a throttled
    /// tab.
    fn reconnect_delay(&mut self, s: usize) -> u64 {
        let u = self.sessions[s].user as usize;
        let backoff = self.pops[self.users[u].pop]
            .reconnect
            .draw(&mut self.users[u].noise);
        backoff.max(self.throttle_delay(s))
    }

    pub(super) fn on_loss_notice(&mut self, s: usize, gen: u32) {
        let session = &mut self.sessions[s];
        if !session.loss_pending || session.loss_gen != gen {
            return;
        }
        session.loss_pending = false;
        if session.conn_alive {
            session.conn_alive = false;
            let conn = session.conn;
            self.disconnect(s, conn, DisconnectKind::Lost);
        }
    }

    // # The network and the server

    pub(super) fn on_partition_start(&mut self, u: usize) {
        self.users[u].partitioned = true;
        for i in 0..self.users[u].sessions.len() {
            let s = self.users[u].sessions[i] as usize;
            if !self.sessions[s].suspended {
                self.set_unreachable(s);
            }
        }
        let pop = &self.pops[self.users[u].pop];
        let length = pop.partition.draw(&mut self.users[u].world);
        self.push(
            self.now + length.max(1),
            Kind::PartitionEnd { user: u as u32 },
        );
    }

    pub(super) fn on_partition_end(&mut self, u: usize) {
        self.users[u].partitioned = false;
        self.users[u].partition_ended = Some(self.now);
        for i in 0..self.users[u].sessions.len() {
            let s = self.users[u].sessions[i] as usize;
            if !self.sessions[s].suspended {
                self.set_reachable(s, false);
            }
        }
        let pop = &self.pops[self.users[u].pop];
        let next = self.users[u].world.exp(pop.partition_every) as u64;
        self.push(
            self.now + next.max(1),
            Kind::PartitionStart { user: u as u32 },
        );
    }

    pub(super) fn on_restart(&mut self, index: usize) {
        let Some(restart) = self.scenario.restarts.get(index) else {
            return;
        };
        let late = restart.late_disconnect_seconds * 1000.0;
        let spread = restart.spread_seconds * 1000.0;
        self.restarted = Some(self.now);
        self.server.restart(self.now, &mut self.books);
        let repeat = (restart.repeat_minutes * 60_000.0).round() as u64;
        for u in 0..self.users.len() {
            for i in 0..self.users[u].sessions.len() {
                let s = self.users[u].sessions[i] as usize;
                let session = &mut self.sessions[s];
                if session.conn_alive {
                    session.conn_alive = false;
                    session.loss_pending = false;
                    let conn = session.conn;
                    let after = self.users[u].noise.uniform(0.0, late) as u64;
                    self.push(
                        self.now + after,
                        Kind::LateDisconnect {
                            session: s as u32,
                            conn,
                        },
                    );
                }
                let session = &self.sessions[s];
                if session.suspended || session.connecting || self.users[u].partitioned {
                    continue; // reconnects when it resumes, or is already on its way
                }
                let mut after = self.users[u].noise.uniform(0.0, spread) as u64;
                after = after.max(self.throttle_delay(s));
                self.sessions[s].connecting = true;
                self.push(self.now + after, Kind::Connect { session: s as u32 });
            }
        }
        if repeat > 0 {
            self.push(
                self.now + repeat,
                Kind::Restart {
                    index: index as u32,
                },
            );
        }
    }

    /// A throttled hidden tab's timers fire up to a throttle interval late: a delay uniform in
    /// it, or 0 for a session that is not throttled.
    fn throttle_delay(&mut self, s: usize) -> u64 {
        let session = &self.sessions[s];
        let u = session.user as usize;
        let pop = &self.pops[self.users[u].pop];
        let throttled = session.truth == Truth::Hidden
            && pop.client == Client::Browser
            && self.now.saturating_sub(session.hidden_since) >= pop.throttle_after;
        if throttled {
            let throttle = pop.throttle as f64;
            self.users[u].noise.uniform(0.0, throttle) as u64
        } else {
            0
        }
    }
}
