//! [`RefusalWatch`]: how a connection learns that the cluster refused the session it carries.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use presence_tracker::ConnectionId;
use tokio::sync::oneshot;

use crate::wire::Refusal;

/// The connections that watch for a refusal of their session, by connection id.
pub(crate) type Watches = Arc<Mutex<HashMap<ConnectionId, oneshot::Sender<Refusal>>>>;

/// One connection's watch for the cluster refusing the session it carries, from
/// [`Hub::watch_refusal`](super::Hub::watch_refusal). Dropping it stops watching.
///
/// A hub that is not part of a cluster never refuses a session this way (its tracker refuses a
/// connect at once): its watches never fire.
pub struct RefusalWatch {
    /// The registry and the connection's entry in it; `None` outside a cluster.
    entry: Option<(Watches, ConnectionId)>,
    /// Until the refusal came.
    rx: Option<oneshot::Receiver<Refusal>>,
}

impl fmt::Debug for RefusalWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefusalWatch")
            .field("connection", &self.entry.as_ref().map(|(_, c)| *c))
            .field("waiting", &self.rx.is_some())
            .finish()
    }
}

impl RefusalWatch {
    /// A watch that never fires.
    pub(crate) fn never() -> Self {
        RefusalWatch {
            entry: None,
            rx: None,
        }
    }

    /// Watches `connection` in `watches` (replacing an earlier watch of the same connection).
    pub(crate) fn new(watches: &Watches, connection: ConnectionId) -> Self {
        let (tx, rx) = oneshot::channel();
        watches.lock().insert(connection, tx);
        RefusalWatch {
            entry: Some((Arc::clone(watches), connection)),
            rx: Some(rx),
        }
    }

    /// Waits until the cluster refuses the connection's session (another node holds it under
    /// a newer claim: code `session_superseded`; another user owns the id: `session_taken`).
    /// The connection should then send the client the refusal and close: the session is no
    /// longer this node's. Never returns outside a cluster, nor after it returned once.
    /// Cancel-safe.
    pub async fn refused(&mut self) -> Refusal {
        if let Some(rx) = self.rx.as_mut() {
            if let Ok(refusal) = rx.await {
                self.rx = None;
                return refusal;
            }
            self.rx = None;
        }
        std::future::pending().await
    }
}

impl Drop for RefusalWatch {
    fn drop(&mut self) {
        // Dropping the receiver closes its sender: the entry to remove is a closed one (a later
        // watch of the same connection id keeps its own).
        self.rx = None;
        if let Some((watches, connection)) = self.entry.take() {
            let mut watches = watches.lock();
            if watches.get(&connection).is_some_and(|tx| tx.is_closed()) {
                watches.remove(&connection);
            }
        }
    }
}
