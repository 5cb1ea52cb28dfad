//! recado: a self-hosted server for virtual assistants who answer customers' messages on behalf of many
//! small businesses (clients) at once.
//!
//! # Layout
//! - [`config`]: typed settings, loaded in layers.
//! - [`domain`]: pure types and rules (ids, clients, messages, roles); no I/O.
//! - [`store`]: the SQLite store (one writer thread with group commit, a reader pool, migrations).
pub mod app;
pub mod channels;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod kb;
pub mod loadgen;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod plugins;
pub mod store;
pub mod telemetry;
