//! recado: a self-hosted server for virtual assistants who answer customers' messages on behalf of many
//! small businesses (clients) at once. `docs/architecture.md` follows one message through these modules.
//!
//! # Layout
//! - [`domain`]: pure types and rules: typed ids, clients and their profiles, messages and their parts,
//!   stored states, the chain's merge rules; no I/O.
//! - [`config`]: typed settings, loaded in layers (defaults, `config/default.toml`, a file, `RECADO__*`).
//! - [`store`]: the SQLite store: one writer thread with group commit, a reader pool, migrations, rows
//!   decoded into domain types, one paging type.
//! - [`channels`]: provider wire formats: every kind of update parsed, sends built, signatures, SSRF checks;
//!   one `ChannelConfig` per channel.
//! - `http`: the API: admission and budgets, thin handlers with typed bodies, one error shape, SSE events.
//! - `pipeline`: stored messages to applied decisions (the client's chain of rule plugins, its defaults),
//!   and replays.
//! - [`plugins`]: the WebAssembly rule-plugin host: engine, budgeted host imports, versioned contracts, upload
//!   checks and compilation, chains and the circuit breaker.
//! - [`reports`]: response-time and workload figures from the stored history.
//! - `sla`: first-response clocks, warnings and `on-overdue` escalations.
//! - `outbox`, `media`: delivery of outbound messages; downloading customers' media into `blobs`.
//! - `housekeeping`: trimming the event log, forgetting ended sessions.
//! - [`backup`]: backups taken while the server runs (by hand or on a schedule) and restores from them.
//! - `worker`: the two worker shapes (claim, step) every background worker runs on, and their watch.
//! - [`kb`]: knowledge bases: articles' files and templates, the tantivy index, language detection,
//!   suggestions.
//! - [`people`]: people's passwords (Argon2id hashing and checks, a few at a time off the async threads).
//! - [`app`]: wiring: handles built from the settings, workers spawned and stopped in order.
//! - [`tools`]: shipped in the binary, not the server: demo seeding, `loadgen`, `bench-kb`, `eval`.
//! - [`telemetry`]: the tracing subscriber.
pub mod app;
pub mod backup;
pub(crate) mod blobs;
pub mod channels;
pub mod config;
pub mod domain;
pub(crate) mod housekeeping;
pub(crate) mod http;
pub mod kb;
pub(crate) mod media;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub mod people;
pub(crate) mod pipeline;
pub mod plugins;
pub mod reports;
pub(crate) mod sla;
pub mod store;
pub mod telemetry;
pub mod tools;
pub(crate) mod worker;
