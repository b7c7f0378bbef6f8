//! Example servers for `presence-tracker`; the code is in the examples:
//! `cargo run --example socketio`, `cargo run --example websocket`.
