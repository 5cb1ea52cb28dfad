//! `recado plugin test`: fixture messages run through the same host and limits as the server, and their
//! decisions compared with the expected ones.
//!
//! A fixture file (TOML) has defaults for the context and a list of cases:
//!
//! ```toml
//! [defaults]
//! client = "dental-gracia"
//! timezone = "Europe/Madrid"
//! languages = ["ca", "es"]
//! now = "2026-11-23T10:00:00Z"
//! within_business_hours = true
//!
//! [[case]]
//! name = "first message, open"
//! text = "Bon dia, teniu hora?"
//! language = "ca"
//! expect = { acknowledge = "Hola! Et responem en uns minuts." }
//!
//! [[case]]
//! name = "acknowledged ten minutes ago"
//! text = "Hi ha algú?"
//! last_acknowledged_minutes_ago = 10
//! expect = { no_acknowledge = true }
//! ```
//!
//! Only the expectations written are checked: `acknowledge`, `no_acknowledge`, `queue`, `no_queue`,
//! `assignee`, `tags` (exact), `priority`, `escalate_level`, `no_escalation`, `error` (the call must fail).
//! `[defaults.business_hours]` (as in `client.toml`) makes `ctx.local` follow each case's `now`.
//!
//! After the file's cases comes a generated one, [`STRESS_CASE`]: the longest message allowed, which must
//! not fail. Each result carries the call's cost (instructions, time, peak memory) against the limits, and a
//! warning for each limit it used more than half of.

use serde::Deserialize;

use super::{HostAccess, LoadedPlugin, MessageCall, PluginContact, PluginContext, PluginHost, PluginMessage};
use crate::domain::{BusinessHours, BusinessTime, Decision, LocalTime, Timestamp};

/// A fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    /// Context shared by every case.
    #[serde(default)]
    pub defaults: Defaults,
    /// The cases.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// Context shared by every case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Client slug.
    pub client: String,
    /// Time zone.
    pub timezone: String,
    /// Client languages.
    pub languages: Vec<String>,
    /// The decision's time, RFC 3339.
    pub now: String,
    /// Whether the client is open.
    pub within_business_hours: bool,
    /// Channel of the messages.
    pub channel: String,
    /// The client's business hours, as in `client.toml` (`mon = ["09:00-14:00"]`, `holidays = [...]`). With
    /// them, whether the client is open and when it next opens or closes are worked out for each case's
    /// time; without them, it is open as `within_business_hours` says, with no next change known.
    pub business_hours: Option<BusinessHours>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            client: "test-client".into(),
            timezone: "Europe/Madrid".into(),
            languages: vec!["en".into()],
            now: "2026-01-05T10:00:00Z".into(),
            within_business_hours: true,
            channel: "whatsapp".into(),
            business_hours: None,
        }
    }
}

/// One fixture message and what the plugin should decide.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case is about.
    pub name: String,
    /// The customer's message (unused by overdue cases).
    #[serde(default)]
    pub text: String,
    /// The decision's time (RFC 3339), instead of the defaults' `now`.
    #[serde(default)]
    pub now: Option<String>,
    /// Makes this an `on-overdue` case: the conversation has waited this many business minutes.
    #[serde(default)]
    pub overdue_minutes: Option<u64>,
    /// Its detected language.
    #[serde(default)]
    pub language: Option<String>,
    /// The contact's name.
    #[serde(default)]
    pub contact_name: Option<String>,
    /// The contact's handle (phone number, chat id).
    #[serde(default)]
    pub contact_handle: Option<String>,
    /// The contact's tags.
    #[serde(default)]
    pub contact_tags: Vec<String>,
    /// Overrides the default.
    #[serde(default)]
    pub within_business_hours: Option<bool>,
    /// Messages in the conversation so far.
    #[serde(default = "one")]
    pub messages_in_conversation: u32,
    /// Customer messages since the last human reply.
    #[serde(default = "one")]
    pub unanswered_inbound: u32,
    /// Minutes since the last automatic acknowledgement.
    #[serde(default)]
    pub last_acknowledged_minutes_ago: Option<i64>,
    /// Minutes since the last human reply.
    #[serde(default)]
    pub last_human_reply_minutes_ago: Option<i64>,
    /// What the decision must contain.
    #[serde(default)]
    pub expect: Expect,
}

fn one() -> u32 {
    1
}

/// Expectations of one case; absent ones are not checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The acknowledgement text.
    pub acknowledge: Option<String>,
    /// No acknowledgement.
    #[serde(default)]
    pub no_acknowledge: bool,
    /// The queue.
    pub queue: Option<String>,
    /// No routing.
    #[serde(default)]
    pub no_queue: bool,
    /// The assignee.
    pub assignee: Option<String>,
    /// Exactly these tags.
    pub tags: Option<Vec<String>>,
    /// The priority (`low`, `normal`, `high`, `urgent`).
    pub priority: Option<String>,
    /// The escalation level.
    pub escalate_level: Option<u8>,
    /// No escalation.
    #[serde(default)]
    pub no_escalation: bool,
    /// The call must fail (trap, budget, error result, invalid output).
    #[serde(default)]
    pub error: bool,
}

/// The result of one case, with what the call cost.
#[derive(Debug, serde::Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// What did not match (empty when it passed).
    pub mismatches: Vec<String>,
    /// The plugin's reason or failure, for the report.
    pub summary: String,
    /// Instructions used, of `fuel_limit`.
    pub fuel: u64,
    /// The call's instruction budget.
    pub fuel_limit: u64,
    /// Wall time of the call, instantiation included, in microseconds, of `deadline_us`.
    pub duration_us: u64,
    /// The call's deadline, in microseconds.
    pub deadline_us: u64,
    /// The most linear memory the call used, in bytes, of `memory_limit`.
    pub memory: usize,
    /// The call's memory limit, in bytes.
    pub memory_limit: usize,
    /// Each limit the call used more than half of: a longer message or a busier machine may cross it.
    pub warnings: Vec<String>,
}

impl CaseResult {
    /// Whether the decision matched.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The name of the case `run` adds to every fixture file.
pub const STRESS_CASE: &str = "generated: the longest message allowed, in mixed scripts with emoji";

/// The stress case's text: [`crate::domain::InboundMessage::MAX_TEXT_CHARS`] characters of Latin with accents,
/// Cyrillic, Chinese, Arabic, emoji (some of them several code points) and punctuation, so a rule that walks
/// the text character by character, or runs a costly regular expression over it, shows its worst cost.
pub fn stress_text() -> String {
    const PIECE: &str = "Hola, ¿tenéis cita el jueves? Urgència! Привет, это срочно. 你好，我要发票。 \
                         مرحبا، أحتاج فاتورة 😀🎉👩‍👩‍👧 factura #12345 ... ";
    PIECE.chars().cycle().take(crate::domain::InboundMessage::MAX_TEXT_CHARS).collect()
}

impl Expect {
    fn check(&self, result: &Result<Decision, super::Failure>) -> Vec<String> {
        let decision = match (result, self.error) {
            (Err(_), true) => return Vec::new(),
            (Ok(decision), true) => return vec![format!("expected the call to fail, it decided: {}", decision.reason)],
            (Err(failure), false) => return vec![format!("the plugin {failure}")],
            (Ok(decision), false) => decision,
        };
        let mut mismatches = Vec::new();
        let mut compare = |what: &str, expected: Option<String>, actual: Option<String>| {
            if expected.is_some() && expected != actual {
                mismatches.push(format!("{what}: expected {expected:?}, got {actual:?}"));
            }
        };
        compare("acknowledge", self.acknowledge.clone(), decision.acknowledge.clone());
        compare("queue", self.queue.clone(), decision.queue.clone());
        compare("assignee", self.assignee.clone(), decision.assignee.clone());
        compare("priority", self.priority.clone(), decision.priority.map(|p| p.as_str().to_owned()));
        compare("tags", self.tags.as_ref().map(|t| t.join(",")), Some(decision.tags.join(",")));
        compare(
            "escalate_level",
            self.escalate_level.map(|l| l.to_string()),
            decision.escalate.as_ref().map(|e| e.level.to_string()),
        );
        if self.no_acknowledge && decision.acknowledge.is_some() {
            mismatches.push(format!("expected no acknowledgement, got {:?}", decision.acknowledge));
        }
        if self.no_queue && decision.queue.is_some() {
            mismatches.push(format!("expected no queue, got {:?}", decision.queue));
        }
        if self.no_escalation && decision.escalate.is_some() {
            mismatches.push(format!("expected no escalation, got {:?}", decision.escalate));
        }
        mismatches
    }
}

/// `recado plugin test`: loads the component at `plugin` in an engine with `limits` (the server's, so a
/// fixture that passes here passes on the server) and room for `max_memory_bytes` (the server's ceiling), reads the installation's configuration (`{}` without
/// one) and the fixture file, and runs every case.
///
/// # Errors
/// A file cannot be read, the configuration is not JSON, the fixtures do not parse, or the component does
/// not load.
pub fn run_files(
    plugin: &std::path::Path,
    config: Option<&std::path::Path>,
    fixtures: &std::path::Path,
    limits: super::Limits,
    max_memory_bytes: usize,
) -> anyhow::Result<Vec<CaseResult>> {
    use anyhow::Context as _;
    let bytes = std::fs::read(plugin).with_context(|| format!("reading {}", plugin.display()))?;
    let config = match config {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => "{}".to_owned(),
    };
    serde_json::from_str::<serde_json::Value>(&config).context("the configuration is not JSON")?;
    let text = std::fs::read_to_string(fixtures).with_context(|| format!("reading {}", fixtures.display()))?;
    let parsed: Fixtures = toml::from_str(&text).with_context(|| format!("{}", fixtures.display()))?;
    let host = PluginHost::with_room(limits, max_memory_bytes)?;
    let loaded = host.load(&bytes).with_context(|| format!("{}", plugin.display()))?;
    run(&host, &loaded, &config, &parsed)
}

/// Runs every case, then [`STRESS_CASE`], each with its cost. Errors only for a fixture file that cannot be
/// used (e.g. an unreadable `now`).
///
/// # Errors
/// The defaults' `now` is not an RFC 3339 time.
pub fn run(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    config: &str,
    fixtures: &Fixtures,
) -> anyhow::Result<Vec<CaseResult>> {
    let time = |text: &str, what: &str| {
        text.parse::<jiff::Timestamp>()
            .map(|at| at.as_millisecond())
            .map_err(|error| anyhow::anyhow!("{what}: {error}"))
    };
    let default_now = time(&fixtures.defaults.now, "defaults.now")?;
    let defaults = &fixtures.defaults;
    let stress = Case {
        name: STRESS_CASE.into(),
        text: stress_text(),
        now: None,
        overdue_minutes: None,
        language: defaults.languages.first().cloned(),
        contact_name: Some("Núria 🌻".into()),
        contact_handle: None,
        contact_tags: Vec::new(),
        within_business_hours: None,
        messages_in_conversation: 1,
        unanswered_inbound: 1,
        last_acknowledged_minutes_ago: None,
        last_human_reply_minutes_ago: None,
        // Any decision will do; failing (out of fuel, past the deadline) will not.
        expect: Expect::default(),
    };
    let limits = host.limits();
    let mut results = Vec::with_capacity(fixtures.cases.len() + 1);
    for (index, case) in fixtures.cases.iter().chain(std::iter::once(&stress)).enumerate() {
        let now = match &case.now {
            Some(text) => time(text, &format!("case {:?}: now", case.name))?,
            None => default_now,
        };
        let minutes = |m: i64| now - m * 60_000;
        let mut local = match &defaults.business_hours {
            Some(hours) => hours.around(Timestamp(now), &defaults.timezone),
            None => BusinessTime {
                now: LocalTime::of(Timestamp(now), &defaults.timezone),
                open: defaults.within_business_hours,
                closes_at: None,
                next_opening: None,
            },
        };
        if let Some(open) = case.within_business_hours {
            local.open = open;
        }
        let call = MessageCall {
            message: PluginMessage {
                id: format!("msg_fixture_{index}"),
                channel: fixtures.defaults.channel.clone(),
                text: case.text.clone(),
                language: case.language.clone(),
                received_at: now,
            },
            contact: PluginContact {
                id: format!("ctc_fixture_{index}"),
                handle: case.contact_handle.clone().unwrap_or_else(|| "+00000000000".into()),
                name: case.contact_name.clone(),
                tags: case.contact_tags.clone(),
                is_new: case.messages_in_conversation <= 1,
            },
            context: PluginContext {
                client: fixtures.defaults.client.clone(),
                now,
                timezone: fixtures.defaults.timezone.clone(),
                within_business_hours: local.open,
                local,
                languages: fixtures.defaults.languages.clone(),
                conversation_id: format!("cnv_fixture_{index}"),
                messages_in_conversation: case.messages_in_conversation,
                unanswered_inbound: case.unanswered_inbound,
                last_acknowledged_at: case.last_acknowledged_minutes_ago.map(minutes),
                last_human_reply_at: case.last_human_reply_minutes_ago.map(minutes),
                config: config.to_owned(),
            },
        };
        let access = HostAccess { kv: Default::default(), kb_search: std::sync::Arc::new(|_, _| Vec::new()) };
        let outcome = match case.overdue_minutes {
            Some(minutes) => host.on_overdue(plugin, &call.context, minutes.saturating_mul(60), access, limits),
            None => host.on_message(plugin, &call, access, limits),
        };
        let mismatches = case.expect.check(&outcome.result);
        let summary = match &outcome.result {
            Ok(decision) => decision.reason.clone(),
            Err(failure) => failure.to_string(),
        };
        let micros = |duration: std::time::Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let (duration_us, deadline_us) = (micros(outcome.duration), micros(limits.deadline));
        let warnings = outcome.warnings(limits);
        results.push(CaseResult {
            name: case.name.clone(),
            mismatches,
            summary,
            fuel: outcome.fuel_used,
            fuel_limit: limits.fuel,
            duration_us,
            deadline_us,
            memory: outcome.peak_memory,
            memory_limit: limits.memory_bytes,
            warnings,
        });
    }
    Ok(results)
}
