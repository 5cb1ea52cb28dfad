//! `GET /api/v1/events`: live events as server-sent events, read from the durable event log.
//!
//! Each event has the log's id (`id:`), its kind (`event:`) and a JSON body naming the client, conversation
//! and message it concerns. A stream starts after the newest event, or after the id in `Last-Event-ID` (or
//! `?after=`) to resume without a gap; from before the log's retention (or more than `events.max_replay`
//! behind) it gets one `resync` event instead, whose id is where it continues: reload, then carry on.
//!
//! The stream reads the log only as fast as the caller reads the stream (nothing is buffered for a slow reader
//! beyond one page; a reader that stops reading is closed by the connection's idle timeout), wakes on each
//! commit rather than polling, sends a heartbeat comment every 15 s so proxies keep it open, and holds a slot
//! of the events budget (`http.max_event_streams`, a share per person or integration token) while open.
//! Each caller sees only the events of the clients in their scope, an assistant's as her assignments stand
//! at each read; a stream whose session or token ends (signed out, revoked, disabled) is closed within
//! `events.recheck_ms`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;

use super::AppState;
use super::admission::Slot;
use super::error::ApiError;
use super::extract::{AppQuery, Principal};
use crate::store::{Credential, Db, EventPage, EventRecord, Scope};

/// Events read from the log at a time.
const PAGE: usize = 200;
/// Longest wait for a commit before looking at the log anyway.
const IDLE_LOOK: Duration = Duration::from_secs(5);
/// Pause after a wake, so a burst of commits is read as one page.
const SETTLE: Duration = Duration::from_millis(20);

/// Query of the event stream.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// Resume after this event id (as `Last-Event-ID` does).
    after: Option<i64>,
}

struct Reader {
    db: Db,
    scope: Scope,
    credential: Credential,
    checked: tokio::time::Instant,
    recheck: Duration,
    after: i64,
    page: VecDeque<Event>,
    ticks: tokio::sync::watch::Receiver<u64>,
    stopping: tokio_util::sync::CancellationToken,
    _slot: Slot,
}

/// `GET /api/v1/events`: the event stream of what the caller may see.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(("after" = Option<i64>, Query)), responses((status = 200, description = "a server-sent event stream (`text/event-stream`)"), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn events_stream(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    AppQuery(query): AppQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = state.admission.events.admit(&principal.key())?;
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid_event_id", "Last-Event-ID is not an id"))
        })
        .transpose()?;
    let latest = state.db.latest_event().await?;
    let mut page = VecDeque::new();
    let after = match resume.or(query.after) {
        // Resuming further behind than is worth replaying: reload instead, from the newest event on.
        Some(after) if latest - after.max(0) > state.settings.events.max_replay => {
            page.push_back(resync(latest));
            latest
        }
        Some(after) => after.max(0),
        None => latest,
    };
    let ticks = state.db.event_ticks();
    let reader = Reader {
        db: state.db.clone(),
        scope: principal.scope(),
        credential: principal.caller.credential.clone(),
        checked: tokio::time::Instant::now(),
        recheck: Duration::from_millis(state.settings.events.recheck_ms),
        after,
        page,
        ticks,
        stopping: state.stopping.clone(),
        _slot: slot,
    };
    let stream = futures::stream::unfold(reader, |mut reader| async move {
        loop {
            if reader.stopping.is_cancelled() {
                // Shutting down: the caller reconnects elsewhere (or later) with Last-Event-ID.
                return None;
            }
            if let Some(event) = reader.page.pop_front() {
                return Some((Ok(event), reader));
            }
            if reader.checked.elapsed() >= reader.recheck {
                match reader.db.credential_is_live(reader.credential.clone()).await {
                    Ok(true) => reader.checked = tokio::time::Instant::now(),
                    Ok(false) => return None,
                    Err(error) => {
                        tracing::warn!(%error, "checking a stream's credential failed; closing the stream");
                        return None;
                    }
                }
            }
            // Mark the current tick seen before reading, so a commit during the read wakes the next wait.
            reader.ticks.borrow_and_update();
            match reader.db.events_after(reader.scope.clone(), reader.after, PAGE).await {
                Ok(EventPage { resync: Some(latest), .. }) => {
                    reader.after = latest;
                    reader.page.push_back(resync(latest));
                    continue;
                }
                Ok(EventPage { records, .. }) if !records.is_empty() => {
                    reader.after = records.last().map_or(reader.after, |record| record.seq);
                    reader.page.extend(records.iter().map(to_event));
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    // The caller reconnects with Last-Event-ID and loses nothing.
                    tracing::warn!(%error, "reading the event log failed; closing the stream");
                    return None;
                }
            }
            tokio::select! {
                changed = reader.ticks.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    tokio::time::sleep(SETTLE).await;
                }
                () = tokio::time::sleep(IDLE_LOOK.min(reader.recheck)) => {}
                () = reader.stopping.cancelled() => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The event that tells a reader it missed events it can no longer get: reload, and continue from `latest`.
fn resync(latest: i64) -> Event {
    Event::default()
        .id(latest.to_string())
        .event("resync")
        .data(format!(r#"{{"reason":"events you missed are no longer kept; reload what you show","latest":{latest}}}"#))
}

/// An event as a stream sends it: its id and kind in the SSE fields, the rest as the JSON data.
fn to_event(record: &EventRecord) -> Event {
    let event = Event::default().id(record.seq.to_string()).event(&record.kind);
    match event.clone().json_data(record) {
        Ok(event) => event,
        // The record is ids, text and JSON already: it always serialises.
        Err(error) => event.comment(format!("unencodable event: {error}")),
    }
}
