//! Pinning an interleaving: [`GateId`], an [`Id`] whose `Hash` can stop the thread hashing it,
//! and [`Worker`], a thread the test steps through those stops.
//!
//! The tracker hashes ids between its critical sections (to find a shard, a table entry, a
//! user's sessions), exactly where a real thread can be preempted. A worker names the stops it
//! makes: the `n`-th hash of a given id *on its own thread* (other threads, the test's included,
//! hash freely). At a stop the worker tells the test and waits until resumed, so the test can
//! run other operations in between, in an order it chooses. A worker that finishes without
//! reaching a stop says so too: after a fix, a stop may no longer be on the path, and the test
//! goes on with the operations in sequence instead of hanging.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::{self, JoinHandle};

use presence_tracker::Id;

/// A `u64` id whose hashing may stop the thread (see the [module](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GateId(pub(crate) u64);

impl Hash for GateId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        stop_if_armed(self.0);
        self.0.hash(state);
    }
}

impl Id for GateId {}

/// What a worker reports.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// Stopped at the `nth` hash of `id` on its thread, holding whatever locks it held there.
    Stopped { id: u64, nth: usize },
    /// Returned.
    Done(T),
}

enum Msg<T> {
    Stopped(u64, usize),
    Done(T),
}

struct Armed {
    stops: Vec<(u64, usize)>,
    counts: HashMap<u64, usize>,
    /// Tells the test about a stop; false if it hung up.
    report: Box<dyn Fn(u64, usize) -> bool>,
    resume: Receiver<()>,
}

thread_local! {
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
}

fn stop_if_armed(id: u64) {
    ARMED.with(|armed| {
        let Ok(mut armed) = armed.try_borrow_mut() else {
            return; // a hash while reporting a stop: none
        };
        let Some(a) = armed.as_mut() else {
            return;
        };
        let n = a.counts.entry(id).or_insert(0);
        *n += 1;
        let nth = *n;
        if a.stops.contains(&(id, nth)) && (a.report)(id, nth) {
            // Until resumed; if the test hung up, go on.
            let _ = a.resume.recv();
        }
    });
}

/// A thread running one operation, stopping where told.
pub(crate) struct Worker<T> {
    name: &'static str,
    report: Receiver<Msg<T>>,
    resume: Sender<()>,
    handle: Option<JoinHandle<()>>,
    stopped: bool,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts `op` on a new thread that stops at each `(id, nth)`: the `nth` (from 1) hash of
    /// `GateId(id)` on that thread.
    pub(crate) fn start(
        name: &'static str,
        stops: &[(u64, usize)],
        op: impl FnOnce() -> T + Send + 'static,
    ) -> Self {
        let (report_tx, report) = channel();
        let (resume, resume_rx) = channel();
        let stops = stops.to_vec();
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let stopped = report_tx.clone();
                ARMED.with(|armed| {
                    *armed.borrow_mut() = Some(Armed {
                        stops,
                        counts: HashMap::new(),
                        report: Box::new(move |id, nth| {
                            stopped.send(Msg::Stopped(id, nth)).is_ok()
                        }),
                        resume: resume_rx,
                    });
                });
                let result = op();
                ARMED.with(|armed| *armed.borrow_mut() = None);
                let _ = report_tx.send(Msg::Done(result));
            })
            .expect("spawns");
        Worker {
            name,
            report,
            resume,
            handle: Some(handle),
            stopped: false,
        }
    }

    /// Waits for the worker's next stop, or its result. Resumes it first if it is stopped.
    pub(crate) fn next(&mut self) -> Step<T> {
        if self.stopped {
            self.resume.send(()).expect("worker waits");
            self.stopped = false;
        }
        match self.report.recv() {
            Ok(Msg::Stopped(id, nth)) => {
                self.stopped = true;
                Step::Stopped { id, nth }
            }
            Ok(Msg::Done(result)) => {
                if let Some(h) = self.handle.take() {
                    h.join().expect("worker joins");
                }
                Step::Done(result)
            }
            Err(_) => {
                let panic = self.handle.take().map(|h| h.join());
                panic!("worker {} panicked: {panic:?}", self.name)
            }
        }
    }

    /// Resumes the worker through all its stops; its result.
    pub(crate) fn finish(mut self) -> T {
        loop {
            if let Step::Done(r) = self.next() {
                return r;
            }
        }
    }
}
