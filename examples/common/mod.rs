//! Code both example servers share. Included by each with
//! `#[path = "common/mod.rs"] mod common;` (a folder without `main.rs` is not an example).

pub(crate) mod app;
pub(crate) mod auth;
pub(crate) mod config;
pub(crate) mod http;
