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
use crate::domain::{Invalid, Role, Timestamp};
use crate::reports::GroupBy;
use crate::store::{PersonRef, ReportRange};

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
    let (from, to) = crate::reports::range_from_text(query.from.as_deref(), query.to.as_deref(), Timestamp::now())?;
    let client = query.client.as_deref().map(|slug| principal.client_in_path(slug)).transpose()?;
    let named = match query.assistant.as_deref() {
        None => None,
        Some(text) => Some(state.db.person(PersonRef::parse(text)?).await?.id.to_string()),
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
    // A bad format is refused before a year of rows is read.
    match query.format.as_deref() {
        None | Some("json" | "csv") => {}
        Some(_) => return Err(Invalid::new("format", "must be json or csv").into()),
    }
    let wants_csv = query.format.as_deref() == Some("csv")
        || headers.get(ACCEPT).and_then(|value| value.to_str().ok()).is_some_and(|accept| accept.contains("text/csv"));
    let range = ReportRange { from, to, client, assistant };
    let report =
        crate::reports::summary(&state.db, principal.scope(), range, query.group_by.unwrap_or(GroupBy::Day)).await?;
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
