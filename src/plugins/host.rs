//! What a call can do on the host, and what it sees of the world.
//!
//! [`CallState`] is the state of one call's store: its WASI context (no files, environment or network;
//! clocks stopped at the decision's time; randomness seeded from the message), its limits, and what the
//! guest asked of the host. The host functions are plain methods here, whatever contract version calls them
//! (each `wit::since_*` module forwards to them), so their budgets and caps are tested without building a guest.

use std::collections::HashMap;
use std::time::Duration;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{KbHit, KbSearch, Limits};
use crate::domain::{LogLevel, LogLine};

/// Longest key of the key-value store, in bytes.
const MAX_KEY_BYTES: usize = 128;

/// Longest knowledge-base query a plugin may send, in characters (more is cut).
const MAX_KB_QUERY_CHARS: usize = 500;

/// Most knowledge-base hits one search returns.
const MAX_KB_HITS: u32 = 10;

/// Per-call state inside the store.
pub(super) struct CallState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: PeakLimits,
    pub(super) call_limits: Limits,
    pub(super) host_calls: u32,
    pub(super) host_budget_hit: bool,
    pub(super) logs: Vec<LogLine>,
    pub(super) kv: HashMap<String, String>,
    pub(super) kv_writes: Vec<(String, String)>,
    pub(super) kb_search: KbSearch,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The store's resource limits, remembering the largest linear memory the call asked for (what `recado
/// plugin test` reports against the memory limit).
pub(super) struct PeakLimits {
    pub(super) limits: StoreLimits,
    pub(super) peak_memory: usize,
}

impl wasmtime::ResourceLimiter for PeakLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The error a budgeted host call traps with.
#[derive(Debug)]
pub(super) struct HostBudgetExceeded;

impl std::fmt::Display for HostBudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("host call budget exceeded")
    }
}

impl std::error::Error for HostBudgetExceeded {}

impl CallState {
    /// Counts a host call; traps once the budget is spent.
    pub(super) fn charge(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.call_limits.host_calls {
            self.host_budget_hit = true;
            return Err(wasmtime::Error::new(HostBudgetExceeded));
        }
        Ok(())
    }
}

impl CallState {
    /// Keeps a log line (up to the per-call count, cut to the byte cap at a character boundary).
    pub(super) fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.charge()?;
        if self.logs.len() < self.call_limits.log_lines {
            let mut line = message;
            if line.len() > self.call_limits.log_line_bytes {
                let mut cut = self.call_limits.log_line_bytes;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            self.logs.push(LogLine { level, message: line });
        }
        Ok(())
    }

    /// A value of the installation's store (as written earlier in this call, or by earlier calls).
    pub(super) fn kv_get(&mut self, key: &str) -> wasmtime::Result<Option<String>> {
        self.charge()?;
        Ok(self.kv.get(key).cloned())
    }

    /// Writes a value, kept only if the call succeeds. A refusal (key or value too long, too many writes) is
    /// the guest's to handle; it does not end the call.
    pub(super) fn kv_set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        self.charge()?;
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Ok(Err(format!("keys must be 1 to {MAX_KEY_BYTES} bytes")));
        }
        if value.len() > self.call_limits.kv_value_bytes {
            return Ok(Err(format!("values must be at most {} bytes", self.call_limits.kv_value_bytes)));
        }
        if self.kv_writes.len() >= self.call_limits.kv_writes {
            return Ok(Err(format!("at most {} writes per call", self.call_limits.kv_writes)));
        }
        self.kv.insert(key.clone(), value.clone());
        self.kv_writes.push((key, value));
        Ok(Ok(()))
    }

    /// Searches the client's own knowledge base.
    pub(super) fn kb_search(&mut self, query: &str, limit: u32) -> wasmtime::Result<Vec<KbHit>> {
        self.charge()?;
        let query: String = query.chars().take(MAX_KB_QUERY_CHARS).collect();
        Ok((self.kb_search)(&query, limit.min(MAX_KB_HITS)))
    }
}

/// A wall clock stopped at the decision's time: plugins get time as an input, never from a clock.
pub(super) struct FixedWallClock(pub(super) Duration);

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that does not move.
pub(super) struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A seeded random source for WASI's "secure" random: a plugin's randomness is part of its inputs.
pub(super) struct SeededRandom(pub(super) u64);

impl rand_core::TryRng for SeededRandom {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        // splitmix64: small, fast, and good enough for a guest's non-cryptographic needs.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// The seed of a call's randomness: a hash (FNV-1a) of what the call is about, so a replay sees the same.
pub(super) fn seed_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand_core::TryRng as _;
    use wasmtime::StoreLimitsBuilder;
    use wasmtime_wasi::WasiCtxBuilder;

    use super::*;

    fn state(limits: Limits) -> CallState {
        CallState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limits: PeakLimits { limits: StoreLimitsBuilder::new().build(), peak_memory: 0 },
            call_limits: limits,
            host_calls: 0,
            host_budget_hit: false,
            logs: Vec::new(),
            kv: HashMap::from([("seen".to_owned(), "before".to_owned())]),
            kv_writes: Vec::new(),
            kb_search: Arc::new(|query, limit| {
                vec![KbHit {
                    article_id: format!("{}:{limit}", query.chars().count()),
                    title: String::new(),
                    score: 1.0,
                }]
            }),
        }
    }

    #[test]
    fn key_value_writes_are_capped_by_key_value_and_count_and_a_refusal_is_the_guests_to_handle() {
        let limits = Limits { kv_writes: 2, kv_value_bytes: 8, ..Limits::default() };
        let mut call = state(limits);
        assert_eq!(call.kv_get("seen").expect("in budget"), Some("before".into()), "earlier calls' values");
        assert!(call.kv_set(String::new(), "v".into()).expect("no trap").is_err(), "an empty key");
        assert!(call.kv_set("k".repeat(MAX_KEY_BYTES + 1), "v".into()).expect("no trap").is_err(), "a long key");
        assert!(call.kv_set("k".repeat(MAX_KEY_BYTES), "v".into()).expect("no trap").is_ok(), "the longest key");
        assert!(call.kv_set("big".into(), "123456789".into()).expect("no trap").is_err(), "a value over 8 bytes");
        assert!(call.kv_set("count".into(), "12345678".into()).expect("no trap").is_ok());
        let third = call.kv_set("third".into(), "x".into()).expect("no trap");
        assert_eq!(third, Err("at most 2 writes per call".into()), "refused writes did not count; the third does");
        assert_eq!(call.kv_get("count").expect("in budget"), Some("12345678".into()), "a call reads its own write");
        assert_eq!(call.kv_writes.len(), 2);
    }

    #[test]
    fn log_lines_are_cut_at_a_character_boundary_and_counted_past_the_cap() {
        let limits = Limits { log_lines: 2, log_line_bytes: 5, ..Limits::default() };
        let mut call = state(limits);
        // "é" is two bytes: five bytes would end inside the third one.
        call.log(LogLevel::Warn, "ééééé".into()).expect("in budget");
        call.log(LogLevel::Info, "ok".into()).expect("in budget");
        call.log(LogLevel::Error, "dropped".into()).expect("a dropped line still does not trap");
        let lines: Vec<(LogLevel, &str)> = call.logs.iter().map(|line| (line.level, line.message.as_str())).collect();
        assert_eq!(lines, [(LogLevel::Warn, "éé"), (LogLevel::Info, "ok")]);
        assert_eq!(call.host_calls, 3, "every line is a host call, kept or not");
    }

    #[test]
    fn the_host_call_budget_traps_the_call_that_exceeds_it() {
        let mut call = state(Limits { host_calls: 3, ..Limits::default() });
        for _ in 0..3 {
            call.kv_get("seen").expect("within the budget");
        }
        let error = call.log(LogLevel::Info, "one too many".into()).expect_err("over the budget");
        assert!(error.downcast_ref::<HostBudgetExceeded>().is_some(), "{error:#}");
        assert!(call.host_budget_hit, "remembered, so the call's failure is reported as the budget");
        assert!(call.logs.is_empty(), "the refused call did nothing");
    }

    #[test]
    fn knowledge_base_searches_are_cut_to_their_caps() {
        let mut call = state(Limits::default());
        let hits = call.kb_search(&"x".repeat(2_000), 99).expect("in budget");
        assert_eq!(hits[0].article_id, format!("{MAX_KB_QUERY_CHARS}:{MAX_KB_HITS}"));
    }

    #[test]
    fn randomness_is_a_function_of_the_seed() {
        let draw = |seed: u64| {
            let mut random = SeededRandom(seed);
            let mut bytes = [0u8; 20];
            random.try_fill_bytes(&mut bytes).expect("infallible");
            (random.try_next_u64().expect("infallible"), bytes)
        };
        assert_eq!(
            draw(seed_of("msg_1")),
            draw(seed_of("msg_1")),
            "the same message, the same numbers: a replay decides the same"
        );
        assert_ne!(draw(seed_of("msg_1")), draw(seed_of("msg_2")), "another message, other numbers");
        assert_ne!(draw(7).1, [0u8; 20]);
    }
}
