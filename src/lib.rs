//! recado: a self-hosted server for virtual assistants who answer customers' messages on behalf of many
//! small businesses (clients) at once.
//!
//! # Layout
//! - [`config`]: typed settings, loaded in layers.
//! - [`domain`]: pure types and rules (ids, clients, messages, roles); no I/O.
//! - [`store`]: the SQLite store (one writer thread with group commit, a reader pool, migrations).
//! - [`pipeline`]: stored messages to applied decisions (defaults and rule-plugin chains).
//! - [`plugins`]: the WebAssembly rule-plugin host, upload checks and compilation, chains.
//! - [`sla`]: first-response clocks, warnings and `on-overdue` escalations.
//! - [`channels`]: provider wire formats: every kind of update parsed, sends built, signatures, SSRF checks.
//! - [`outbox`], [`media`]: delivery of outbound messages; downloading customers' media into [`blobs`]; both
//!   on the claim-and-work loop of [`worker`], which also watches every background worker.
pub mod app;
pub mod blobs;
pub mod channels;
pub mod config;
pub mod domain;
pub mod http;
pub mod kb;
pub mod media;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod plugins;
pub mod sla;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod worker;
