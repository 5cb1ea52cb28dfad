//! The guest SDK for recado rule plugins.
//!
//! Rule plugins are WebAssembly components that decide, for every incoming customer message, whether to
//! acknowledge it automatically, where to route it and whether to escalate it. The WIT contract, the
//! `Plugin` trait and the export macro arrive with the rule-plugin issue; until then this crate only
//! names the contract version the server speaks.
#![deny(missing_docs)]

/// The version of the `recado:plugin` WIT package this SDK targets.
pub const CONTRACT_VERSION: &str = "0.1.0";
