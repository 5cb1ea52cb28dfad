//! Reports: response-time and workload figures over a range, in total, per client, per assistant and per
//! UTC day or week (weeks start on Monday), computed from the rows the store reads (`store::ReportRows`).
//!
//! Definitions, which the tests recompute by hand:
//! - **Conversations** are those opened (first customer message) in the range; **messages** those created in
//!   it, inbound (from customers) and outbound (replies, acknowledgements, notices, templates).
//! - **First response**: from a conversation's first customer message to its first reply by a person (an
//!   automatic acknowledgement is not a response), on the wall clock and counted in the client's opening
//!   hours. Median and 90th percentile by nearest rank. **Within target**: the share of first responses that
//!   met the client's first-response target (the clock's `met`, against `met_late`).
//! - **Acknowledgement coverage**: the share of conversations whose first customer message got an automatic
//!   acknowledgement queued within a minute.
//! - **Escalations** by level, raised in the range.
//! - **Suggestion use**: of the replies sent in the range, how many started from a suggestion (the feedback
//!   that named a pick), and how many of those were edited first.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{ChannelName, ClientSlug, Direction, Invalid, MessageKind, SlaState, Timestamp};
use crate::store::{
    ConversationFacts, DAY_MS, Db, Error as StoreError, FeedbackCount, MessageCount, ReportRange, ReportRows, Scope,
};

/// The longest range a report covers, in days.
pub const MAX_DAYS: i64 = 731;

/// A report's range as a caller wrote it: each end an RFC 3339 time or a date (UTC midnight); `to` (exclusive)
/// defaults to `now`, `from` to 30 days before `to`; at most [`MAX_DAYS`].
///
/// # Errors
/// An end that is neither, or a range that is empty or too long.
pub fn range_from_text(
    from: Option<&str>,
    to: Option<&str>,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), Invalid> {
    let to = to.map(|text| instant("to", text)).transpose()?.unwrap_or(now);
    let from = match from {
        Some(text) => instant("from", text)?,
        None => Timestamp(to.millis() - 30 * DAY_MS),
    };
    if to.millis() <= from.millis() || to.millis() - from.millis() > MAX_DAYS * DAY_MS {
        return Err(Invalid::new("to", format!("must be after from, and at most {MAX_DAYS} days after it")));
    }
    Ok((from, to))
}

/// An RFC 3339 time, or a date taken as UTC midnight.
fn instant(field: &str, text: &str) -> Result<Timestamp, Invalid> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(Timestamp(at.as_millisecond()));
    }
    let date: jiff::civil::Date =
        text.parse().map_err(|_| Invalid::new(field, "must be an RFC 3339 time or a date like 2026-12-01"))?;
    let at = date.to_zoned(jiff::tz::TimeZone::UTC).map_err(|error| Invalid::new(field, error.to_string()))?;
    Ok(Timestamp(at.timestamp().as_millisecond()))
}

/// How periods are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// UTC days.
    Day,
    /// Weeks from Monday, UTC.
    Week,
}

impl GroupBy {
    /// Days in a period.
    fn days(self) -> i64 {
        match self {
            Self::Day => 1,
            Self::Week => 7,
        }
    }

    /// The first day (days since 1970-01-01) of the period holding `day`.
    fn start(self, day: i64) -> i64 {
        match self {
            Self::Day => day,
            // 1970-01-01 was a Thursday: three days after a Monday.
            Self::Week => day - (day + 3).rem_euclid(7),
        }
    }
}

/// Messages in and out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InOut {
    /// From customers.
    pub inbound: u64,
    /// To customers (replies, acknowledgements, notices).
    pub outbound: u64,
}

/// First-response figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FirstResponse {
    /// Conversations with a first reply.
    pub count: u64,
    /// Median, wall clock.
    pub median_ms: Option<i64>,
    /// 90th percentile, wall clock.
    pub p90_ms: Option<i64>,
    /// Median, in opening hours.
    pub median_open_ms: Option<i64>,
    /// 90th percentile, in opening hours.
    pub p90_open_ms: Option<i64>,
    /// First responses whose clock ended met or met late.
    pub with_target: u64,
    /// Of those, within the target.
    pub within_target: u64,
    /// `within_target / with_target`.
    pub within_target_share: Option<f64>,
}

/// Automatic-acknowledgement coverage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Acknowledgements {
    /// Conversations opened.
    pub conversations: u64,
    /// Of those, acknowledged within a minute of the first customer message.
    pub within_a_minute: u64,
    /// `within_a_minute / conversations`.
    pub share: Option<f64>,
}

/// Suggestion use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SuggestionUse {
    /// Replies sent by people.
    pub replies: u64,
    /// Replies that started from a suggestion.
    pub from_suggestion: u64,
    /// Of those, edited before sending.
    pub edited: u64,
    /// `from_suggestion / replies`.
    pub share: Option<f64>,
}

/// The figures of one slice (everything, a client, an assistant, a period).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    /// Conversations opened.
    pub conversations: u64,
    /// Conversations opened, by channel.
    pub conversations_by_channel: BTreeMap<String, u64>,
    /// Messages.
    pub messages: InOut,
    /// Messages by channel.
    pub messages_by_channel: BTreeMap<String, InOut>,
    /// First responses.
    pub first_response: FirstResponse,
    /// Acknowledgement coverage.
    pub acknowledgements: Acknowledgements,
    /// Escalations raised, by level.
    pub escalations_by_level: BTreeMap<u8, u64>,
    /// Suggestion use.
    pub suggestions: SuggestionUse,
}

/// One client's figures.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientFigures {
    /// The client.
    pub client: ClientSlug,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// One person's figures (their first responses, replies and suggestion use).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AssistantFigures {
    /// Who: a person's id, or `token:<id>`.
    pub assistant: String,
    /// Their name, for a person.
    pub name: Option<String>,
    /// Their first responses.
    pub first_response: FirstResponse,
    /// Their replies and suggestion use.
    pub suggestions: SuggestionUse,
}

/// One period's figures.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PeriodFigures {
    /// When the period starts (UTC midnight).
    pub start: Timestamp,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// A whole report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// From (inclusive).
    pub from: Timestamp,
    /// To (exclusive).
    pub to: Timestamp,
    /// How periods are cut.
    pub group_by: GroupBy,
    /// Everything in the range.
    pub total: Figures,
    /// Per client.
    pub clients: Vec<ClientFigures>,
    /// Per person who replied.
    pub assistants: Vec<AssistantFigures>,
    /// Per period, in order.
    pub periods: Vec<PeriodFigures>,
}

/// The value at rank `ceil(q * n)` of `values` in ascending order (nearest rank). Reorders `values`.
fn nearest_rank(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    // Selection rather than a sort: linear in the number of values, and a year holds hundreds of thousands.
    Some(*values.select_nth_unstable(rank - 1).1)
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Accumulates one slice; channels are positions in [`ReportRows::channels`].
#[derive(Default)]
struct Slice {
    figures: Figures,
    conversations_by_channel: Vec<u64>,
    messages_by_channel: Vec<InOut>,
    wall: Vec<i64>,
    open: Vec<i64>,
}

impl Slice {
    fn conversation(&mut self, facts: &ConversationFacts) {
        let figures = &mut self.figures;
        figures.conversations += 1;
        *grown(&mut self.conversations_by_channel, facts.channel) += 1;
        figures.acknowledgements.conversations += 1;
        if facts.acknowledged_at.is_some_and(|at| at.millis() - facts.opened_at.millis() <= 60_000) {
            figures.acknowledgements.within_a_minute += 1;
        }
        self.first_response(facts);
    }

    fn first_response(&mut self, facts: &ConversationFacts) {
        let (Some(wall), Some(open)) = (facts.first_response_ms, facts.first_response_open_ms) else { return };
        let first = &mut self.figures.first_response;
        first.count += 1;
        self.wall.push(wall);
        self.open.push(open);
        match facts.sla_state {
            Some(SlaState::Met) => {
                first.with_target += 1;
                first.within_target += 1;
            }
            Some(SlaState::MetLate) => first.with_target += 1,
            _ => {}
        }
    }

    fn messages(&mut self, count: &MessageCount) {
        let figures = &mut self.figures;
        let by_channel = grown(&mut self.messages_by_channel, count.channel);
        match count.direction {
            Direction::In => {
                figures.messages.inbound += count.count;
                by_channel.inbound += count.count;
            }
            Direction::Out => {
                figures.messages.outbound += count.count;
                by_channel.outbound += count.count;
                if count.kind == MessageKind::Assistant {
                    figures.suggestions.replies += count.count;
                }
            }
        }
    }

    fn suggestion_used(&mut self, count: &FeedbackCount) {
        let suggestions = &mut self.figures.suggestions;
        suggestions.from_suggestion += count.count;
        if count.edited {
            suggestions.edited += count.count;
        }
    }

    fn finish(mut self, channels: &[ChannelName]) -> Figures {
        let figures = &mut self.figures;
        let first = &mut figures.first_response;
        first.median_ms = nearest_rank(&mut self.wall, 0.5);
        first.p90_ms = nearest_rank(&mut self.wall, 0.9);
        first.median_open_ms = nearest_rank(&mut self.open, 0.5);
        first.p90_open_ms = nearest_rank(&mut self.open, 0.9);
        first.within_target_share = share(first.within_target, first.with_target);
        let acks = &mut figures.acknowledgements;
        acks.share = share(acks.within_a_minute, acks.conversations);
        let suggestions = &mut figures.suggestions;
        suggestions.share = share(suggestions.from_suggestion, suggestions.replies);
        let name = |position: usize| channels.get(position).map_or_else(String::new, ToString::to_string);
        for (position, count) in self.conversations_by_channel.into_iter().enumerate().filter(|(_, count)| *count > 0) {
            *figures.conversations_by_channel.entry(name(position)).or_default() += count;
        }
        for (position, counts) in self.messages_by_channel.into_iter().enumerate() {
            if counts != InOut::default() {
                let by_channel = figures.messages_by_channel.entry(name(position)).or_default();
                by_channel.inbound += counts.inbound;
                by_channel.outbound += counts.outbound;
            }
        }
        self.figures
    }
}

/// The element at `position`, the vector grown with defaults to hold it.
fn grown<T: Default>(values: &mut Vec<T>, position: u32) -> &mut T {
    let position = position as usize;
    if values.len() <= position {
        values.resize_with(position + 1, T::default);
    }
    &mut values[position]
}

/// The slices of the periods of a range, by day.
struct Periods {
    group_by: GroupBy,
    first: i64,
    slices: Vec<Slice>,
}

impl Periods {
    /// Every period of `[from, to)`, empty ones too.
    fn new(from: Timestamp, to: Timestamp, group_by: GroupBy) -> Self {
        let (first_day, last_day) = (from.millis().div_euclid(DAY_MS), (to.millis() - 1).div_euclid(DAY_MS));
        let first = group_by.start(first_day);
        let count = (group_by.start(last_day.max(first_day)) - first) / group_by.days() + 1;
        Self { group_by, first, slices: (0..count).map(|_| Slice::default()).collect() }
    }

    /// The slice of the period holding `day` (days outside the range have none).
    fn slice(&mut self, day: i64) -> Option<&mut Slice> {
        let index = (self.group_by.start(day) - self.first) / self.group_by.days();
        usize::try_from(index).ok().and_then(|index| self.slices.get_mut(index))
    }
}

/// Computes the report of `rows` over `[from, to)`.
pub fn compute(rows: &ReportRows, from: Timestamp, to: Timestamp, group_by: GroupBy) -> Report {
    let mut total = Slice::default();
    let mut clients: Vec<Slice> = rows.clients.iter().map(|_| Slice::default()).collect();
    // Only people whose work shows: a first response, a reply, a reply from a suggestion.
    let mut assistants: Vec<Option<Slice>> = rows.actors.iter().map(|_| None).collect();
    let mut periods = Periods::new(from, to, group_by);
    fn assistant(assistants: &mut [Option<Slice>], position: u32) -> &mut Slice {
        assistants[position as usize].get_or_insert_with(Slice::default)
    }

    for facts in &rows.conversations {
        total.conversation(facts);
        clients[facts.client as usize].conversation(facts);
        if let Some(slice) = periods.slice(facts.opened_at.millis().div_euclid(DAY_MS)) {
            slice.conversation(facts);
        }
        if let Some(who) = facts.first_reply_by {
            assistant(&mut assistants, who).first_response(facts);
        }
    }
    for count in &rows.messages {
        total.messages(count);
        clients[count.client as usize].messages(count);
        if let Some(slice) = periods.slice(count.day) {
            slice.messages(count);
        }
        if count.kind == MessageKind::Assistant
            && let Some(author) = count.author
        {
            assistant(&mut assistants, author).figures.suggestions.replies += count.count;
        }
    }
    for count in &rows.escalations {
        for slice in [Some(&mut total), Some(&mut clients[count.client as usize]), periods.slice(count.day)]
            .into_iter()
            .flatten()
        {
            *slice.figures.escalations_by_level.entry(count.level).or_default() += count.count;
        }
    }
    for count in &rows.feedback {
        total.suggestion_used(count);
        clients[count.client as usize].suggestion_used(count);
        if let Some(slice) = periods.slice(count.day) {
            slice.suggestion_used(count);
        }
        assistant(&mut assistants, count.actor).suggestion_used(count);
    }

    let channels = &rows.channels;
    let mut client_figures: Vec<ClientFigures> = rows
        .clients
        .iter()
        .zip(clients)
        .map(|(client, slice)| ClientFigures { client: client.clone(), figures: slice.finish(channels) })
        .collect();
    client_figures.sort_by(|a, b| a.client.cmp(&b.client));
    let mut assistant_figures: Vec<AssistantFigures> = rows
        .actors
        .iter()
        .zip(assistants)
        .filter_map(|(actor, slice)| {
            let figures = slice?.finish(channels);
            Some(AssistantFigures {
                assistant: actor.id.clone(),
                name: actor.name.clone(),
                first_response: figures.first_response,
                suggestions: figures.suggestions,
            })
        })
        .collect();
    assistant_figures.sort_by(|a, b| a.assistant.cmp(&b.assistant));
    let (first, days) = (periods.first, group_by.days());
    Report {
        from,
        to,
        group_by,
        total: total.finish(channels),
        clients: client_figures,
        assistants: assistant_figures,
        periods: (0..)
            .zip(periods.slices)
            .map(|(index, slice)| PeriodFigures {
                start: Timestamp((first + index * days) * DAY_MS),
                figures: slice.finish(channels),
            })
            .collect(),
    }
}

/// The report of `range` over what `scope` may see: the rows read, the figures computed off the async threads.
///
/// # Errors
/// The store fails.
pub async fn summary(db: &Db, scope: Scope, range: ReportRange, group_by: GroupBy) -> Result<Report, StoreError> {
    let (from, to) = (range.from, range.to);
    let rows = db.report_rows(scope, range).await?;
    Ok(tokio::task::spawn_blocking(move || compute(&rows, from, to, group_by)).await?)
}

/// The CSV of a report: one row per slice (the total, each client, each person, each period), with the
/// figures as columns; durations in seconds, shares as fractions.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::from(
        "slice,key,name,conversations,messages_in,messages_out,first_responses,first_response_median_s,\
         first_response_p90_s,first_response_open_median_s,first_response_open_p90_s,within_target_share,\
         acknowledged_within_a_minute_share,escalations,replies,replies_from_suggestion,replies_edited,suggestion_share\n",
    );
    let seconds = |ms: Option<i64>| ms.map_or(String::new(), |ms| format!("{:.1}", ms as f64 / 1000.0));
    let fraction = |value: Option<f64>| value.map_or(String::new(), |value| format!("{value:.4}"));
    let field = |text: &str| {
        if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
    };
    let mut row = |slice: &str, key: &str, name: &str, figures: &Figures| {
        let first = &figures.first_response;
        let escalations: u64 = figures.escalations_by_level.values().sum();
        out.push_str(&format!(
            "{slice},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            field(key),
            field(name),
            figures.conversations,
            figures.messages.inbound,
            figures.messages.outbound,
            first.count,
            seconds(first.median_ms),
            seconds(first.p90_ms),
            seconds(first.median_open_ms),
            seconds(first.p90_open_ms),
            fraction(first.within_target_share),
            fraction(figures.acknowledgements.share),
            escalations,
            figures.suggestions.replies,
            figures.suggestions.from_suggestion,
            figures.suggestions.edited,
            fraction(figures.suggestions.share),
        ));
    };
    row("total", "", "", &report.total);
    for client in &report.clients {
        row("client", client.client.as_str(), "", &client.figures);
    }
    for assistant in &report.assistants {
        let figures = Figures {
            first_response: assistant.first_response.clone(),
            suggestions: assistant.suggestions.clone(),
            ..Figures::default()
        };
        row("assistant", &assistant.assistant, assistant.name.as_deref().unwrap_or(""), &figures);
    }
    for period in &report.periods {
        row("period", &period.start.to_rfc3339(), "", &period.figures);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let mut values = [100, 30, 20, 40, 90, 60, 70, 80, 50, 10];
        assert_eq!(nearest_rank(&mut values, 0.5), Some(50));
        assert_eq!(nearest_rank(&mut values, 0.9), Some(90));
        assert_eq!(nearest_rank(&mut [7], 0.9), Some(7));
        assert_eq!(nearest_rank(&mut [], 0.5), None);
        assert_eq!(nearest_rank(&mut [3, 1, 2], 0.5), Some(2));
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-12-07 is a Monday (day 20_794); the Sunday before belongs to the week before.
        let monday = 20_794;
        assert_eq!(GroupBy::Week.start(monday), monday);
        assert_eq!(GroupBy::Week.start(monday + 6), monday);
        assert_eq!(GroupBy::Week.start(monday - 1), monday - 7);
        assert_eq!(GroupBy::Day.start(monday + 3), monday + 3);
    }
}
