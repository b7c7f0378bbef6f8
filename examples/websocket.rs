//! Presence over a plain WebSocket (axum), with JSON messages: for clients that do not run
//! Socket.IO. The same demo page and browser client as the `socketio` example.
//!
//! ```text
//! cargo run --example websocket [-- --port 3000 --snapshot presence.json --active-ms 1000 ...]
//! ```
//!
//! With `--redis URL` it is one node of a cluster, as the `socketio` example.
//!
//! The route at `/ws` comes from `presence-tracker-server` (feature `axum`): the wire and the
//! close codes are in its `ws` module's docs. `--help` lists the flags.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use presence_tracker_server::ws::{self, WsOptions};
use presence_tracker_server::Admission;

use common::app::App;
use common::config::Config;
use common::http::{self, Transport};

#[tokio::main]
async fn main() {
    let config = match Config::from_env_and_args("websocket") {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(e) => exit(&e, 2),
    };
    let app = App::start(&config).await.unwrap_or_else(|e| exit(&e, 1));
    let signer = app.signer.clone();
    let mut options = WsOptions::default()
        .pings(config.ping_interval, config.ping_timeout)
        .write_timeout(config.ping_timeout.max(Duration::from_secs(1)));
    if let Some((rate, burst)) = config.admission {
        options = options.admission(Admission::new(rate, burst));
    }
    let route = ws::route_with(app.hub.clone(), signer, options);

    let router = http::routes(
        app.clone(),
        Transport::WebSocket,
        config.socket_io_js.clone(),
    )
    .route("/ws", route);
    println!("presence over WebSocket: {}", config.describe());
    if let Err(e) = app.serve(router, &config).await {
        exit(&e, 1);
    }
}

fn exit(message: &str, code: i32) -> ! {
    eprintln!("websocket: {message}");
    std::process::exit(code)
}
