//! Presence over Socket.IO (socketioxide 0.18, protocol v5): the demo page lists who is online,
//! live. Open <http://127.0.0.1:3000> in several tabs, sign in as several users; hide, reload
//! and close them.
//!
//! ```text
//! cargo run --example socketio [-- --port 3000 --snapshot presence.json --active-ms 1000 ...]
//! ```
//!
//! Several nodes, one presence: each node with `--redis`, on its own port, e.g.
//! `cargo run --example socketio -- --redis redis://127.0.0.1:6379 --port 3001` and the same
//! with `--port 3002`; a page on either shows the same users and rooms.
//!
//! Everything presence-specific comes from `presence-tracker-server` (feature `socketioxide`):
//! the wire is in its `socketio` module's docs. `--help` lists the flags.

#[path = "common/mod.rs"]
mod common;

use presence_tracker_server::socketio::SocketIoOptions;
use presence_tracker_server::{socketio, Admission};
use socketioxide::SocketIo;

use common::app::App;
use common::config::Config;
use common::http::{self, Transport};

#[tokio::main]
async fn main() {
    let config = match Config::from_env_and_args("socketio") {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(e) => exit(&e, 2),
    };
    let app = App::start(&config).await.unwrap_or_else(|e| exit(&e, 1));
    // Bounded for a public endpoint: small client messages, a short connect timeout.
    let (layer, io) = socketio::bounded(SocketIo::builder())
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .build_layer();
    let signer = app.signer.clone();
    let mut options = SocketIoOptions::default();
    let admission = config
        .admission
        .map(|(rate, burst)| Admission::new(rate, burst));
    if let Some(admission) = admission.clone().filter(|_| config.admit_at_namespace) {
        options = options.admission(admission);
    }
    socketio::attach_with(&io, "/", app.hub.clone(), signer, options);

    let router = http::routes(
        app.clone(),
        Transport::SocketIo,
        config.socket_io_js.clone(),
    )
    .layer(layer)
    // Socket.IO keeps each socket's request; this keeps hyper's read buffer out of it.
    .layer(socketio::CompactRequestLayer::new());
    // Over the rate, a new Engine.IO session gets a 503 before any work.
    let router = match admission.filter(|_| !config.admit_at_namespace) {
        Some(admission) => router.layer(socketio::AdmissionLayer::new(admission)),
        None => router,
    };
    println!("presence over Socket.IO: {}", config.describe());
    if let Err(e) = app.serve(router, &config).await {
        exit(&e, 1);
    }
}

fn exit(message: &str, code: i32) -> ! {
    eprintln!("socketio: {message}");
    std::process::exit(code)
}
