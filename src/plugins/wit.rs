//! The versioned plugin contracts. Each `since_vX_Y_Z` module holds the bindings of one `recado:plugin`
//! version (generated from `plugins-sdk/wit/since_vX.Y.Z`), its host functions (forwarding to `host`) and
//! the conversions between its records and ours. The engine loads components of the current one.

pub(super) mod since_v0_1_0;

pub(super) use since_v0_1_0 as current;
