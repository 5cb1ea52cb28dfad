//! Black-box tests: the server on 127.0.0.1:0 with its own temporary data directory, called over HTTP.
#![allow(unreachable_pub)] // One test binary: `pub` in its modules only means "shared with the other test modules".

mod articles;
mod assistants;
mod attachments;
mod backup;
mod browser;
mod channel_fixtures;
mod channel_properties;
mod cli;
mod clients;
mod console;
mod conversations;
mod crash;
mod database;
mod events;
mod helpers;
mod ingest;
mod isolation;
mod media;
mod openapi;
mod outbox;
mod people;
mod plugins;
mod reply_window;
mod reports;
mod robustness;
mod route_matrix;
mod row_security;
mod scale_out;
mod security;
mod sessions;
mod sla;
mod suggestions;
mod transfer;
mod upgrades;
mod webhooks;
