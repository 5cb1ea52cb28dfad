//! `GET /api/v1/reports/summary`: response-time and workload figures (see `crate::reports` for what each
//! figure means), as JSON or, with `Accept: text/csv` or `?format=csv`, as CSV. Admins see everything (or one
//! client's, one person's); a client's people and tokens their own client's; an assistant her own work on
//! the clients she serves.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{AppQuery, Principal};
use crate::domain::{Email, Invalid, PersonId, Role, Timestamp};
use crate::reports::GroupBy;
use crate::store::{DAY_MS, PersonRef, ReportRange};

/// The longest range a report covers.
const MAX_DAYS: i64 = 731;

/// Query of a report.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    /// From (inclusive): an RFC 3339 time or a date (UTC midnight). Default: 30 days before `to`.
    from: Option<String>,
    /// To (exclusive): an RFC 3339 time or a date (UTC midnight). Default: now.
    to: Option<String>,
    /// Only this client.
    client: Option<String>,
    /// Only this person's work: their email or id.
    assistant: Option<String>,
    /// `day` (default) or `week`.
    group_by: Option<GroupBy>,
    /// `json` (default) or `csv`.
    format: Option<String>,
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

/// `GET /api/v1/reports/summary?from=&to=&client=&assistant=&group_by=day|week&format=json|csv`.
#[utoipa::path(get, path = "/api/v1/reports/summary", tag = "reports",
    params(("from" = Option<String>, Query), ("to" = Option<String>, Query), ("client" = Option<String>, Query),
           ("assistant" = Option<String>, Query), ("group_by" = Option<String>, Query), ("format" = Option<String>, Query)),
    responses((status = 200, description = "the figures, as JSON or CSV", body = crate::reports::Report),
              (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody),
              (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)),
    security(("token" = []), ("session" = [])))]
pub(super) async fn reports_summary(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    AppQuery(query): AppQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let to = query.to.as_deref().map(|text| instant("to", text)).transpose()?.unwrap_or_else(Timestamp::now);
    let from = match query.from.as_deref() {
        Some(text) => instant("from", text)?,
        None => Timestamp(to.millis() - 30 * DAY_MS),
    };
    if to.millis() <= from.millis() || to.millis() - from.millis() > MAX_DAYS * DAY_MS {
        return Err(Invalid::new("to", format!("must be after from, and at most {MAX_DAYS} days after it")).into());
    }
    let client = query.client.as_deref().map(|slug| principal.client_in_path(slug)).transpose()?;
    let named = match query.assistant.as_deref() {
        None => None,
        Some(text) => {
            let who = match PersonId::parse(text) {
                Some(id) => PersonRef::Id(id),
                None => PersonRef::Email(Email::parse(text)?),
            };
            Some(state.db.person(who).await?.id.to_string())
        }
    };
    // What each role may see: a client's own figures; an assistant's own work.
    let assistant = match principal.role() {
        Role::Admin => named,
        Role::Client => named,
        Role::Assistant => {
            let me = principal.person()?.id.to_string();
            if named.as_ref().is_some_and(|named| *named != me) {
                return Err(ApiError::NotFound("person".into()));
            }
            Some(me)
        }
    };
    let range = ReportRange { from, to, client, assistant };
    let rows = state.db.report_rows(principal.scope(), range).await?;
    let group_by = query.group_by.unwrap_or(GroupBy::Day);
    let report = tokio::task::spawn_blocking(move || crate::reports::compute(&rows, from, to, group_by))
        .await
        .map_err(|error| ApiError::Internal(error.into()))?;
    let wants_csv = query.format.as_deref() == Some("csv")
        || headers.get(ACCEPT).and_then(|value| value.to_str().ok()).is_some_and(|accept| accept.contains("text/csv"));
    match query.format.as_deref() {
        None | Some("json" | "csv") => {}
        Some(_) => return Err(Invalid::new("format", "must be json or csv").into()),
    }
    if wants_csv {
        let csv = crate::reports::to_csv(&report);
        return Ok((
            [
                (CONTENT_TYPE, "text/csv; charset=utf-8"),
                (CONTENT_DISPOSITION, "attachment; filename=\"recado-report.csv\""),
            ],
            csv,
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}
