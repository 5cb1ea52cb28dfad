//! A client (one business the assistants answer for) and its profile: hours, SLA, defaults.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Invalid, Timestamp};

/// The stable, URL-safe identifier of a client, e.g. `dental-gracia`.
///
/// It is the client id that leads every key in the store, so it never changes once created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ClientSlug(String);

impl ClientSlug {
    /// Maximum length of a slug.
    pub const MAX_LEN: usize = 64;

    /// Parses a slug: 1 to 64 of `[a-z0-9-]`, starting and ending with a letter or digit.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let bytes = value.as_bytes();
        let valid_len = !value.is_empty() && value.len() <= Self::MAX_LEN;
        let valid_chars = bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        let valid_ends = bytes.first().is_some_and(|b| *b != b'-') && bytes.last().is_some_and(|b| *b != b'-');
        if valid_len && valid_chars && valid_ends {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new("slug", "must be 1 to 64 characters of a-z, 0-9 and '-', not starting or ending with '-'"))
        }
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ClientSlug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ClientSlug {
    type Err = Invalid;
    fn from_str(value: &str) -> Result<Self, Invalid> {
        Self::parse(value)
    }
}

impl fmt::Display for ClientSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientSlug {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Everything about a client except its slug and its channel credentials.
///
/// The same shape is read from `kb/<client>/client.toml`, accepted by the clients API and stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientProfile {
    /// The business's display name.
    pub name: String,
    /// IANA time zone of the business, e.g. `Europe/Madrid`.
    pub timezone: String,
    /// Languages the business answers in, most preferred first (e.g. `["ca", "es"]`).
    pub languages: Vec<String>,
    /// Opening hours per weekday, and holidays.
    #[serde(default)]
    pub business_hours: BusinessHours,
    /// Service-level targets.
    #[serde(default)]
    pub sla: Sla,
    /// What the assistant must know when answering for this business (tone, rules, names).
    #[serde(default)]
    pub instructions: String,
    /// Who is told when a conversation is escalated.
    #[serde(default)]
    pub escalation_contact: Option<EscalationContact>,
    /// The business's queues. When listed, rule plugins may route only to these (a decision naming another
    /// queue counts as an invalid output); when empty, any well-formed queue name is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// What happens when no rule plugin decides otherwise.
    #[serde(default)]
    pub defaults: ClientDefaults,
    /// How reply suggestions behave for this client.
    #[serde(default)]
    pub suggestions: SuggestionSettings,
    /// WhatsApp message templates Meta has approved for this business: the only messages WhatsApp lets a
    /// business send once the customer's 24-hour window has closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub whatsapp_templates: Vec<WhatsAppTemplate>,
    /// Limits of this client's rule plugins that differ from the server's; only an admin sets them.
    #[serde(default, skip_serializing_if = "PluginLimits::is_empty")]
    pub plugin_limits: PluginLimits,
}

/// What an admin granted one client's rule plugins beyond (or below) the server's defaults: a field left
/// out keeps the server's value. The server caps each at its own most-per-client (`plugins.per_client_max`),
/// and refuses a grant past it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// Linear memory one call may use, in bytes (at least 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Instructions (fuel) one call may use (at least 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock deadline of one call, in milliseconds (1 to 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Largest component this client may upload, in bytes (at least 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_component_bytes: Option<u64>,
    /// Plugin time of one of the client's turns in the pipeline, in milliseconds (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_slice_ms: Option<u64>,
    /// Longest one of its messages waits for its rules before its defaults decide, in milliseconds (at least
    /// 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_queue_ms: Option<u64>,
}

impl PluginLimits {
    /// Whether nothing is granted (the server's defaults apply).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Every field that is set, by name, with its value.
    pub fn fields(&self) -> [(&'static str, Option<u64>); 6] {
        [
            ("memory_bytes", self.memory_bytes),
            ("fuel", self.fuel),
            ("deadline_ms", self.deadline_ms),
            ("max_component_bytes", self.max_component_bytes),
            ("client_slice_ms", self.client_slice_ms),
            ("client_queue_ms", self.client_queue_ms),
        ]
    }

    /// Checks each value's own bounds (the server's ceilings are checked where they are known).
    pub fn validate(&self) -> Result<(), Invalid> {
        let floors: [(&str, u64, u64); 6] = [
            ("memory_bytes", 1 << 20, u64::MAX),
            ("fuel", 1_000_000, u64::MAX),
            ("deadline_ms", 1, 10_000),
            ("max_component_bytes", 1024, u64::MAX),
            ("client_slice_ms", 1, u64::MAX),
            ("client_queue_ms", 1_000, u64::MAX),
        ];
        for ((name, value), (_, min, max)) in self.fields().into_iter().zip(floors) {
            if let Some(value) = value
                && !(min..=max).contains(&value)
            {
                let bounds =
                    if max == u64::MAX { format!("at least {min}") } else { format!("between {min} and {max}") };
                return Err(Invalid::new(name, format!("must be {bounds}")));
            }
        }
        Ok(())
    }
}

/// An approved WhatsApp message template, as registered with Meta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppTemplate {
    /// Its name at Meta (`appointment_reminder`).
    pub name: String,
    /// Its language code at Meta (`es`, `pt_BR`, `en_US`).
    pub language: String,
    /// The body text with `{{1}}`, `{{2}}`... where parameters go, shown in the conversation.
    #[serde(default)]
    pub body: String,
    /// How many body parameters it takes.
    #[serde(default)]
    pub parameters: u8,
}

impl WhatsAppTemplate {
    fn validate(&self) -> Result<(), Invalid> {
        let name_ok = (1..=512).contains(&self.name.len())
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(Invalid::new("name", "must be 1 to 512 of a-z, 0-9 and '_'"));
        }
        let language_ok = (2..=15).contains(&self.language.len())
            && self.language.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !language_ok {
            return Err(Invalid::new("language", "must be a WhatsApp language code such as es, en_US or pt_BR"));
        }
        if self.body.chars().count() > 1_024 {
            return Err(Invalid::new("body", "must be at most 1024 characters"));
        }
        if self.parameters > 20 {
            return Err(Invalid::new("parameters", "must be at most 20"));
        }
        Ok(())
    }

    /// The body with `parameters` in place of `{{1}}`, `{{2}}`...; the template's name when no body was given.
    pub fn render(&self, parameters: &[String]) -> String {
        if self.body.is_empty() {
            return format!("[template {} ({}): {}]", self.name, self.language, parameters.join(", "));
        }
        let mut text = self.body.clone();
        for (index, value) in parameters.iter().enumerate() {
            text = text.replace(&format!("{{{{{}}}}}", index + 1), value);
        }
        text
    }
}

/// How reply suggestions behave for a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestionSettings {
    /// Confidence threshold: articles scoring below it are not suggested (see `BENCHMARKS.md` for the
    /// scores the demo data gets).
    #[serde(default = "SuggestionSettings::default_min_score")]
    pub min_score: f32,
}

impl SuggestionSettings {
    fn default_min_score() -> f32 {
        1.0
    }
}

impl Default for SuggestionSettings {
    fn default() -> Self {
        Self { min_score: Self::default_min_score() }
    }
}

impl ClientProfile {
    /// A profile with everything but the name, time zone and languages at its default.
    pub fn new(name: &str, timezone: &str, languages: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            timezone: timezone.to_owned(),
            languages: languages.iter().map(|language| (*language).to_owned()).collect(),
            business_hours: BusinessHours::default(),
            sla: Sla::default(),
            instructions: String::new(),
            escalation_contact: None,
            queues: Vec::new(),
            defaults: ClientDefaults::default(),
            suggestions: SuggestionSettings::default(),
            whatsapp_templates: Vec::new(),
            plugin_limits: PluginLimits::default(),
        }
    }

    /// Checks every field, returning the first problem with its path.
    pub fn validate(&self) -> Result<(), Invalid> {
        super::parse_text("name", &self.name, 200)?;
        if jiff::tz::TimeZone::get(&self.timezone).is_err() {
            return Err(Invalid::new("timezone", format!("unknown time zone {:?}", self.timezone)));
        }
        if self.languages.is_empty() {
            return Err(Invalid::new("languages", "must list at least one language"));
        }
        for (index, language) in self.languages.iter().enumerate() {
            validate_language(language).map_err(|e| e.within(&format!("languages[{index}]")))?;
        }
        self.business_hours.validate().map_err(|e| e.within("business_hours"))?;
        self.sla.validate().map_err(|e| e.within("sla"))?;
        if self.instructions.chars().count() > 20_000 {
            return Err(Invalid::new("instructions", "must be at most 20000 characters"));
        }
        if let Some(contact) = &self.escalation_contact {
            contact.validate().map_err(|e| e.within("escalation_contact"))?;
        }
        for (index, queue) in self.queues.iter().enumerate() {
            super::parse_label(&format!("queues[{index}]"), queue, 64)?;
        }
        if self.queues.len() > 100 {
            return Err(Invalid::new("queues", "at most 100 queues"));
        }
        self.defaults.validate().map_err(|e| e.within("defaults"))?;
        if !(0.0..=1_000.0).contains(&self.suggestions.min_score) {
            return Err(Invalid::new("suggestions.min_score", "must be between 0 and 1000"));
        }
        if self.whatsapp_templates.len() > 250 {
            return Err(Invalid::new("whatsapp_templates", "at most 250 templates"));
        }
        for (index, template) in self.whatsapp_templates.iter().enumerate() {
            template.validate().map_err(|e| e.within(&format!("whatsapp_templates[{index}]")))?;
        }
        self.plugin_limits.validate().map_err(|e| e.within("plugin_limits"))?;
        Ok(())
    }

    /// The client's preferred language (the first listed).
    pub fn primary_language(&self) -> &str {
        self.languages.first().map(String::as_str).unwrap_or("en")
    }
}

/// Checks a language code: `xx` or `xxx`, optionally followed by `-` and a region or script (`pt-BR`).
pub(super) fn validate_language(code: &str) -> Result<(), Invalid> {
    let mut parts = code.splitn(2, '-');
    let base = parts.next().unwrap_or_default();
    let base_ok = (2..=3).contains(&base.len()) && base.bytes().all(|b| b.is_ascii_lowercase());
    let rest_ok = parts
        .next()
        .is_none_or(|rest| (2..=8).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    if base_ok && rest_ok {
        Ok(())
    } else {
        Err(Invalid::new("", format!("{code:?} is not a language code such as \"es\" or \"pt-BR\"")))
    }
}

/// Days of the week, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// Opening intervals per weekday (in the client's time zone) and closed dates.
///
/// An empty weekday is closed all day; a profile with no intervals at all is treated as always open,
/// since a business that never set its hours should not be reported as permanently closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// Monday's intervals, e.g. `["09:00-14:00", "16:00-20:00"]`.
    #[serde(default)]
    pub mon: Vec<Interval>,
    /// Tuesday.
    #[serde(default)]
    pub tue: Vec<Interval>,
    /// Wednesday.
    #[serde(default)]
    pub wed: Vec<Interval>,
    /// Thursday.
    #[serde(default)]
    pub thu: Vec<Interval>,
    /// Friday.
    #[serde(default)]
    pub fri: Vec<Interval>,
    /// Saturday.
    #[serde(default)]
    pub sat: Vec<Interval>,
    /// Sunday.
    #[serde(default)]
    pub sun: Vec<Interval>,
    /// Dates (`YYYY-MM-DD`, local) on which the business is closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl Weekday {
    /// The weekday of a civil date.
    fn of(day: jiff::civil::Weekday) -> Self {
        match day {
            jiff::civil::Weekday::Monday => Self::Mon,
            jiff::civil::Weekday::Tuesday => Self::Tue,
            jiff::civil::Weekday::Wednesday => Self::Wed,
            jiff::civil::Weekday::Thursday => Self::Thu,
            jiff::civil::Weekday::Friday => Self::Fri,
            jiff::civil::Weekday::Saturday => Self::Sat,
            jiff::civil::Weekday::Sunday => Self::Sun,
        }
    }
}

impl BusinessHours {
    /// The intervals of one weekday.
    pub fn day(&self, day: Weekday) -> &[Interval] {
        match day {
            Weekday::Mon => &self.mon,
            Weekday::Tue => &self.tue,
            Weekday::Wed => &self.wed,
            Weekday::Thu => &self.thu,
            Weekday::Fri => &self.fri,
            Weekday::Sat => &self.sat,
            Weekday::Sun => &self.sun,
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        let days = [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ];
        for (name, intervals) in days {
            for pair in intervals.windows(2) {
                if pair[1].open < pair[0].close {
                    return Err(Invalid::new(name, "intervals must be in order and must not overlap"));
                }
            }
        }
        for (index, date) in self.holidays.iter().enumerate() {
            if date.parse::<jiff::civil::Date>().is_err() {
                return Err(Invalid::new(format!("holidays[{index}]"), format!("{date:?} is not a YYYY-MM-DD date")));
            }
        }
        Ok(())
    }

    /// Whether no interval is set at all (then the business counts as always open).
    fn always_open(&self) -> bool {
        [&self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun].iter().all(|day| day.is_empty())
    }

    /// The open spans of local date `date`, as `[start, end)` in milliseconds since the epoch.
    fn open_spans(&self, date: jiff::civil::Date, tz: &jiff::tz::TimeZone) -> Vec<(i64, i64)> {
        if self.holidays.contains(&date.to_string()) {
            return Vec::new();
        }
        let day = Weekday::of(date.weekday());
        let at = |minute: u16| -> Option<i64> {
            // 24:00 is the next day's midnight.
            let (date, minute) = if minute >= 24 * 60 { (date.tomorrow().ok()?, 0) } else { (date, minute) };
            let hour = i8::try_from(minute / 60).ok()?;
            let minute = i8::try_from(minute % 60).ok()?;
            Some(date.at(hour, minute, 0, 0).to_zoned(tz.clone()).ok()?.timestamp().as_millisecond())
        };
        self.day(day).iter().filter_map(|interval| Some((at(interval.open)?, at(interval.close)?))).collect()
    }

    /// The instant `open_ms` milliseconds of opening time after `start` (in time zone `timezone`): what a
    /// target counted in business time, such as a first-response target, comes to.
    pub fn add_open_time(&self, start: Timestamp, open_ms: i64, timezone: &str) -> Timestamp {
        let plain = Timestamp(start.millis().saturating_add(open_ms));
        let Some((tz, mut date)) = self.local_date(start, timezone) else { return plain };
        let mut remaining = open_ms;
        // Bounded: ten years of closed days means the hours are unusable; fall back to plain time.
        for _ in 0..3_660 {
            for (open, close) in self.open_spans(date, &tz) {
                let from = open.max(start.millis());
                if from >= close {
                    continue;
                }
                if remaining <= close - from {
                    return Timestamp(from + remaining);
                }
                remaining -= close - from;
            }
            let Ok(next) = date.tomorrow() else { return plain };
            date = next;
        }
        plain
    }

    /// Opening time between `from` and `to`, in milliseconds (zero when `to` is not after `from`).
    pub fn open_time_between(&self, from: Timestamp, to: Timestamp, timezone: &str) -> i64 {
        if to.millis() <= from.millis() {
            return 0;
        }
        let Some((tz, mut date)) = self.local_date(from, timezone) else { return to.millis() - from.millis() };
        let mut total = 0;
        for _ in 0..3_660 {
            let spans = self.open_spans(date, &tz);
            for (open, close) in spans {
                let (start, end) = (open.max(from.millis()), close.min(to.millis()));
                if end > start {
                    total += end - start;
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            let next_start = next.at(0, 0, 0, 0).to_zoned(tz.clone()).map(|z| z.timestamp().as_millisecond());
            if next_start.map_or(true, |next_start| next_start >= to.millis()) {
                break;
            }
            date = next;
        }
        total
    }

    /// The time zone and the local date of `at`, unless the business is always open or the zone unknown.
    fn local_date(&self, at: Timestamp, timezone: &str) -> Option<(jiff::tz::TimeZone, jiff::civil::Date)> {
        if self.always_open() {
            return None;
        }
        let tz = jiff::tz::TimeZone::get(timezone).ok()?;
        let date = jiff::Timestamp::from_millisecond(at.millis()).ok()?.to_zoned(tz.clone()).date();
        Some((tz, date))
    }

    /// Returns true if and only if the business is open at `at`, in time zone `timezone`.
    pub fn is_open(&self, at: Timestamp, timezone: &str) -> bool {
        let all = [&self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun];
        if all.iter().all(|day| day.is_empty()) {
            return true;
        }
        let Ok(tz) = jiff::tz::TimeZone::get(timezone) else { return true };
        let Ok(instant) = jiff::Timestamp::from_millisecond(at.millis()) else { return true };
        let local = instant.to_zoned(tz);
        let date = local.date().to_string();
        if self.holidays.contains(&date) {
            return false;
        }
        let day = Weekday::of(local.weekday());
        let minute = u16::try_from(local.hour()).unwrap_or(0) * 60 + u16::try_from(local.minute()).unwrap_or(0);
        self.day(day).iter().any(|interval| interval.open <= minute && minute < interval.close)
    }
}

/// A moment on a client's wall clock: what plugins get instead of a time-zone database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// The instant.
    pub at: Timestamp,
    /// Local year.
    pub year: i32,
    /// Local month, 1 to 12.
    pub month: u8,
    /// Local day of the month.
    pub day: u8,
    /// ISO 8601 weekday: 1 is Monday, 7 is Sunday.
    pub weekday: u8,
    /// Minutes since local midnight.
    pub minute_of_day: u16,
    /// Offset from UTC at that instant, in minutes.
    pub utc_offset_minutes: i32,
}

impl LocalTime {
    /// `at` in time zone `timezone` (UTC when the zone is unknown, as [`BusinessHours::is_open`] treats it).
    pub fn of(at: Timestamp, timezone: &str) -> Self {
        let tz = jiff::tz::TimeZone::get(timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let instant = jiff::Timestamp::from_millisecond(at.millis()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let local = instant.to_zoned(tz);
        Self {
            at,
            year: i32::from(local.year()),
            month: u8::try_from(local.month()).unwrap_or(1),
            day: u8::try_from(local.day()).unwrap_or(1),
            weekday: u8::try_from(local.weekday().to_monday_one_offset()).unwrap_or(1),
            minute_of_day: u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0),
            utc_offset_minutes: local.offset().seconds() / 60,
        }
    }
}

/// A client's business hours around a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessTime {
    /// The moment on the client's clock.
    pub now: LocalTime,
    /// Whether the client is open then ([`BusinessHours::is_open`]).
    pub open: bool,
    /// While open: when this opening ends (absent when open around the clock).
    pub closes_at: Option<LocalTime>,
    /// While closed: when the client next opens, within [`BusinessHours::LOOKAHEAD_DAYS`].
    pub next_opening: Option<LocalTime>,
}

impl BusinessHours {
    /// How far ahead [`BusinessHours::around`] looks for the next opening or closing.
    pub const LOOKAHEAD_DAYS: usize = 14;

    /// The business hours around `at`: open or not, and when that changes next.
    pub fn around(&self, at: Timestamp, timezone: &str) -> BusinessTime {
        let now = LocalTime::of(at, timezone);
        let open = self.is_open(at, timezone);
        let mut around = BusinessTime { now, open, closes_at: None, next_opening: None };
        let Some((tz, mut date)) = self.local_date(at, timezone) else { return around };
        // Yesterday's last span may run to midnight and today's first start there: one opening, merged.
        let mut spans: Vec<(i64, i64)> = Vec::new();
        if let Ok(yesterday) = date.yesterday() {
            date = yesterday;
        }
        // From yesterday to `LOOKAHEAD_DAYS` after today.
        for _ in 0..=Self::LOOKAHEAD_DAYS + 1 {
            for (start, end) in self.open_spans(date, &tz) {
                match spans.last_mut() {
                    Some(last) if last.1 >= start => last.1 = last.1.max(end),
                    _ => spans.push((start, end)),
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        let local = |millis: i64| LocalTime::of(Timestamp(millis), timezone);
        if open {
            around.closes_at = spans
                .iter()
                .find(|(start, end)| *start <= at.millis() && at.millis() < *end)
                .map(|(_, end)| local(*end));
        } else {
            around.next_opening = spans.iter().find(|(start, _)| *start > at.millis()).map(|(start, _)| local(*start));
        }
        around
    }
}

/// An opening interval within one day, `HH:MM-HH:MM`, stored as minutes after midnight. `24:00` closes at
/// midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Minute of the day the business opens.
    pub open: u16,
    /// Minute of the day it closes (exclusive).
    pub close: u16,
}

impl Interval {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fail = || format!("{text:?} is not an interval such as \"09:00-14:00\"");
        let (open, close) = text.split_once('-').ok_or_else(fail)?;
        let minute = |part: &str| -> Option<u16> {
            let (h, m) = part.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let (open, close) = (minute(open).ok_or_else(fail)?, minute(close).ok_or_else(fail)?);
        if open >= close {
            return Err(format!("{text:?} closes before it opens"));
        }
        Ok(Self { open, close })
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}-{:02}:{:02}", self.open / 60, self.open % 60, self.close / 60, self.close % 60)
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// In the API document: the text it is written as.
impl utoipa::PartialSchema for Interval {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\d{2}:\d{2}-\d{2}:\d{2}$"))
            .examples(["09:00-13:30"])
            .into()
    }
}

impl utoipa::ToSchema for Interval {}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Service-level targets of a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    /// Target for the first human reply, in business-hours minutes.
    pub first_response_minutes: u32,
    /// Fraction of the target at which a warning is raised (0 < f < 1).
    #[serde(default = "Sla::default_warning_fraction")]
    pub warning_fraction: f64,
}

impl Sla {
    fn default_warning_fraction() -> f64 {
        0.8
    }

    /// When the warning and the target of a first-response clock started at `start` fall, counted in
    /// `hours`' opening time.
    pub fn deadlines(&self, hours: &BusinessHours, start: Timestamp, timezone: &str) -> (Timestamp, Timestamp) {
        let target_ms = i64::from(self.first_response_minutes) * 60_000;
        // Rounded to the millisecond: the fraction is validated to (0, 1), so the warning precedes the target.
        let warn_ms = (target_ms as f64 * self.warning_fraction).round() as i64;
        (hours.add_open_time(start, warn_ms, timezone), hours.add_open_time(start, target_ms, timezone))
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.first_response_minutes == 0 || self.first_response_minutes > 60 * 24 * 30 {
            return Err(Invalid::new("first_response_minutes", "must be between 1 and 43200"));
        }
        if !(self.warning_fraction > 0.0 && self.warning_fraction < 1.0) {
            return Err(Invalid::new("warning_fraction", "must be between 0 and 1, exclusive"));
        }
        Ok(())
    }
}

impl Default for Sla {
    fn default() -> Self {
        Self { first_response_minutes: 60, warning_fraction: Self::default_warning_fraction() }
    }
}

/// The person told when a conversation is escalated, and how to reach them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationContact {
    /// Who it is, e.g. "Dr. Marta Puig (owner)".
    pub name: String,
    /// Channel to reach them on: `whatsapp`, `telegram` or `webhook`.
    pub channel: String,
    /// Their handle on that channel (a phone number, a chat id).
    pub handle: String,
}

impl EscalationContact {
    fn validate(&self) -> Result<(), Invalid> {
        super::parse_text("name", &self.name, 200)?;
        if !["whatsapp", "telegram", "webhook"].contains(&self.channel.as_str()) {
            return Err(Invalid::new("channel", "must be one of whatsapp, telegram, webhook"));
        }
        super::parse_text("handle", &self.handle, 200)?;
        Ok(())
    }
}

/// What happens to a message when no rule plugin decides otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientDefaults {
    /// Whether the first message of a conversation gets an automatic acknowledgement.
    #[serde(default)]
    pub auto_acknowledge: bool,
    /// Acknowledgement text per language code; the client's primary language is the fallback.
    #[serde(default)]
    pub acknowledgement: BTreeMap<String, String>,
    /// Acknowledgement text per language used outside business hours (falls back to `acknowledgement`).
    #[serde(default)]
    pub acknowledgement_closed: BTreeMap<String, String>,
    /// Queue new conversations land in.
    #[serde(default)]
    pub queue: Option<String>,
}

impl ClientDefaults {
    fn validate(&self) -> Result<(), Invalid> {
        for (field, texts) in
            [("acknowledgement", &self.acknowledgement), ("acknowledgement_closed", &self.acknowledgement_closed)]
        {
            for (language, text) in texts {
                validate_language(language).map_err(|e| e.within(field))?;
                super::parse_text(&format!("{field}.{language}"), text, 1_000)?;
            }
        }
        if let Some(queue) = &self.queue {
            super::parse_label("queue", queue, 64)?;
        }
        Ok(())
    }

    /// The acknowledgement text for `language`, falling back to `fallback_language`, then to any text.
    pub fn acknowledgement_for(&self, language: &str, fallback_language: &str, open: bool) -> Option<&str> {
        fn pick<'a>(texts: &'a BTreeMap<String, String>, language: &str, fallback: &str) -> Option<&'a str> {
            texts.get(language).or_else(|| texts.get(fallback)).or_else(|| texts.values().next()).map(String::as_str)
        }
        let open_text = pick(&self.acknowledgement, language, fallback_language);
        if open { open_text } else { pick(&self.acknowledgement_closed, language, fallback_language).or(open_text) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> ClientProfile {
        ClientProfile {
            name: "Clínica Dental Gràcia".into(),
            timezone: "Europe/Madrid".into(),
            languages: vec!["ca".into(), "es".into()],
            business_hours: BusinessHours {
                mon: vec![
                    Interval::parse("09:00-14:00").expect("valid"),
                    Interval::parse("16:00-20:00").expect("valid"),
                ],
                holidays: vec!["2026-12-28".into()],
                ..BusinessHours::default()
            },
            sla: Sla::default(),
            instructions: String::new(),
            escalation_contact: None,
            queues: Vec::new(),
            defaults: ClientDefaults::default(),
            suggestions: SuggestionSettings::default(),
            whatsapp_templates: Vec::new(),
            plugin_limits: PluginLimits::default(),
        }
    }

    #[test]
    fn plugin_limits_are_checked_against_their_own_bounds() {
        let mut profile = profile();
        profile.plugin_limits =
            PluginLimits { memory_bytes: Some(64 << 20), fuel: Some(1_000_000_000), ..PluginLimits::default() };
        assert_eq!(profile.validate(), Ok(()));
        profile.plugin_limits.deadline_ms = Some(0);
        let error = profile.validate().expect_err("a zero deadline");
        assert_eq!(error.to_string(), "plugin_limits.deadline_ms: must be between 1 and 10000");
        profile.plugin_limits = PluginLimits { client_queue_ms: Some(10), ..PluginLimits::default() };
        let error = profile.validate().expect_err("a queue time under a second");
        assert_eq!(error.to_string(), "plugin_limits.client_queue_ms: must be at least 1000");
    }

    #[test]
    fn slugs_accept_lowercase_words_and_reject_the_rest() {
        assert!(ClientSlug::parse("dental-gracia").is_ok());
        for bad in ["", "-x", "x-", "Dental", "a b", "ñ", &"a".repeat(65)] {
            assert!(ClientSlug::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn intervals_parse_and_print_back() {
        let interval = Interval::parse("09:30-24:00").expect("valid");
        assert_eq!((interval.open, interval.close), (570, 1440));
        assert_eq!(interval.to_string(), "09:30-24:00");
        assert!(Interval::parse("14:00-09:00").is_err());
        assert!(Interval::parse("9:00-10:00").is_err());
        assert!(Interval::parse("09:60-10:00").is_err());
    }

    #[test]
    fn profile_validation_names_the_field() {
        let mut bad = profile();
        bad.timezone = "Mars/Olympus".into();
        assert_eq!(bad.validate().expect_err("invalid").field, "timezone");
        let mut bad = profile();
        bad.languages = vec!["ca".into(), "Spanish".into()];
        assert_eq!(bad.validate().expect_err("invalid").field, "languages[1]");
        let mut bad = profile();
        bad.business_hours.holidays = vec!["25/12".into()];
        assert_eq!(bad.validate().expect_err("invalid").field, "business_hours.holidays[0]");
        assert!(profile().validate().is_ok());
    }

    #[test]
    fn business_hours_follow_the_local_clock_and_holidays() {
        let hours = profile().business_hours;
        // Monday 2026-11-23 10:00 in Madrid is 09:00 UTC.
        let open = "2026-11-23T09:00:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert!(hours.is_open(Timestamp(open), "Europe/Madrid"));
        // 14:30 local: the lunch break.
        let lunch = "2026-11-23T13:30:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert!(!hours.is_open(Timestamp(lunch), "Europe/Madrid"));
        // 2026-12-28 is a Monday listed as a holiday: closed at 11:00 local although Monday has hours.
        let holiday = "2026-12-28T10:00:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert!(!hours.is_open(Timestamp(holiday), "Europe/Madrid"));
        let next_monday = "2027-01-04T10:00:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert!(hours.is_open(Timestamp(next_monday), "Europe/Madrid"));
        assert!(BusinessHours::default().is_open(Timestamp(lunch), "Europe/Madrid"));
    }

    fn at(text: &str) -> Timestamp {
        Timestamp(text.parse::<jiff::Timestamp>().expect("ts").as_millisecond())
    }

    #[test]
    fn the_local_clock_and_the_next_change_of_business_hours_are_worked_out_in_the_clients_zone() {
        let hours = profile().business_hours;
        // Monday 2026-11-23, 10:30 in Madrid (UTC+1 in winter): open until the lunch break at 14:00.
        let open = hours.around(at("2026-11-23T09:30:00Z"), "Europe/Madrid");
        let now = open.now;
        assert_eq!((now.year, now.month, now.day, now.weekday), (2026, 11, 23, 1));
        assert_eq!((now.minute_of_day, now.utc_offset_minutes), (10 * 60 + 30, 60));
        assert!(open.open);
        assert_eq!(open.closes_at.map(|t| (t.at, t.minute_of_day)), Some((at("2026-11-23T13:00:00Z"), 14 * 60)));
        assert_eq!(open.next_opening, None);
        // The lunch break: closed, open again at 16:00 the same day.
        let lunch = hours.around(at("2026-11-23T13:30:00Z"), "Europe/Madrid");
        assert!(!lunch.open);
        assert_eq!(lunch.next_opening.map(|t| (t.day, t.minute_of_day)), Some((23, 16 * 60)));
        // Monday evening: only Mondays have hours, and 2026-11-30 is the next one.
        let evening = hours.around(at("2026-11-23T21:00:00Z"), "Europe/Madrid");
        assert_eq!(evening.next_opening.map(|t| (t.month, t.day, t.weekday, t.minute_of_day)), Some((11, 30, 1, 540)));
        // The Monday before a holiday Monday: the next opening skips 2026-12-28.
        let before_holiday = hours.around(at("2026-12-21T20:00:00Z"), "Europe/Madrid");
        assert_eq!(before_holiday.next_opening.map(|t| (t.year, t.month, t.day)), Some((2027, 1, 4)));
        // Summer time: the same wall-clock hour is an hour earlier in UTC, and the offset says so.
        let summer = LocalTime::of(at("2026-07-06T08:00:00Z"), "Europe/Madrid");
        assert_eq!((summer.minute_of_day, summer.utc_offset_minutes), (10 * 60, 120));
        // Two intervals that meet are one opening: it closes at the end of the second.
        let split = BusinessHours {
            tue: vec![Interval::parse("09:00-12:00").expect("valid"), Interval::parse("12:00-18:00").expect("valid")],
            ..BusinessHours::default()
        };
        let tuesday = split.around(at("2026-11-24T10:00:00Z"), "Europe/Madrid");
        assert_eq!(tuesday.closes_at.map(|t| t.minute_of_day), Some(18 * 60));
        // Never set: open around the clock, nothing ever changes.
        let always = BusinessHours::default().around(at("2026-11-23T03:00:00Z"), "Europe/Madrid");
        assert_eq!((always.open, always.closes_at, always.next_opening), (true, None, None));
        // No opening within the look-ahead: none rather than a guess.
        let mut closed = BusinessHours { mon: hours.mon.clone(), ..BusinessHours::default() };
        closed.holidays = (0..3).map(|week| format!("2026-12-{:02}", 7 + 7 * week)).collect();
        assert_eq!(closed.around(at("2026-12-01T12:00:00Z"), "Europe/Madrid").next_opening, None);
    }

    #[test]
    fn business_time_skips_closed_hours_days_and_holidays() {
        // Open only on Mondays 09:00-14:00 and 16:00-20:00 (Madrid, UTC+1 in winter).
        let hours = profile().business_hours;
        let minutes = |m: i64| m * 60_000;
        // Monday 13:30 local + 60 open minutes: 30 before lunch, 30 after it reopens at 16:00.
        let due = hours.add_open_time(at("2026-11-23T12:30:00Z"), minutes(60), "Europe/Madrid");
        assert_eq!(due, at("2026-11-23T15:30:00Z"));
        // Monday 19:30 + 60: 30 today, then the next open Monday (2026-11-30) 09:00 + 30.
        let due = hours.add_open_time(at("2026-11-23T18:30:00Z"), minutes(60), "Europe/Madrid");
        assert_eq!(due, at("2026-11-30T08:30:00Z"));
        // Written on Sunday: the clock starts on Monday's opening.
        let due = hours.add_open_time(at("2026-11-22T12:00:00Z"), minutes(15), "Europe/Madrid");
        assert_eq!(due, at("2026-11-23T08:15:00Z"));
        // The holiday Monday 2026-12-28 does not count.
        let due = hours.add_open_time(at("2026-12-27T12:00:00Z"), minutes(15), "Europe/Madrid");
        assert_eq!(due, at("2027-01-04T08:15:00Z"));
        // And back: the open time between the two ends of each case is what was added.
        assert_eq!(
            hours.open_time_between(at("2026-11-23T18:30:00Z"), at("2026-11-30T08:30:00Z"), "Europe/Madrid"),
            minutes(60)
        );
        assert_eq!(hours.open_time_between(at("2026-11-24T08:00:00Z"), at("2026-11-29T08:00:00Z"), "Europe/Madrid"), 0);
        // No hours at all: plain time.
        let always = BusinessHours::default();
        assert_eq!(
            always.add_open_time(at("2026-11-22T12:00:00Z"), minutes(15), "Europe/Madrid"),
            at("2026-11-22T12:15:00Z")
        );
        assert_eq!(
            always.open_time_between(at("2026-11-22T12:00:00Z"), at("2026-11-22T12:15:00Z"), "Europe/Madrid"),
            minutes(15)
        );
    }

    #[test]
    fn acknowledgement_falls_back_to_primary_language_and_open_text() {
        let mut defaults = ClientDefaults::default();
        defaults.acknowledgement.insert("es".into(), "Hola".into());
        defaults.acknowledgement.insert("ca".into(), "Hola (ca)".into());
        defaults.acknowledgement_closed.insert("es".into(), "Cerrado".into());
        assert_eq!(defaults.acknowledgement_for("ca", "es", true), Some("Hola (ca)"));
        assert_eq!(defaults.acknowledgement_for("ru", "es", true), Some("Hola"));
        assert_eq!(defaults.acknowledgement_for("ca", "es", false), Some("Cerrado"));
    }
}
