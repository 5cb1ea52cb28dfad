//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), so stdout stays free for command
//! output.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it again is harmless (tests call it from many places).
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // try_init fails only if a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
