//! `GET /api/v1/audit`: who changed what, newest first. Admins page through every entry (or one client's
//! with `?client=`); a client's people and tokens through their own client's; assistants are refused.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AppQuery, Principal};
use super::paging::{next_cursor, page_request};
use crate::domain::Role;
use crate::store::AuditEntry;

/// Filters and paging of the audit log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Only this client's entries (admins; a client always sees only its own).
    client: Option<String>,
    /// Where the page starts: the `next_cursor` of the previous page.
    cursor: Option<String>,
    limit: Option<usize>,
}

/// A page of the audit log.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AuditPage {
    entries: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/audit`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(("client" = Option<String>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)), responses((status = 200, description = "a page of the audit log", body = AuditPage), (status = "4XX", description = "refused: the error body says why", body = super::error::ErrorBody), (status = "5XX", description = "overloaded, timed out or failed: retry", body = super::error::ErrorBody)), security(("token" = []), ("session" = [])))]
pub(super) async fn audit_list(
    State(state): State<AppState>,
    principal: Principal,
    AppQuery(query): AppQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let client = match (principal.role(), &principal.caller.client) {
        (Role::Admin, _) => query.client.as_deref().map(|slug| principal.client_in_path(slug)).transpose()?,
        (Role::Client, Some(own)) => {
            if let Some(slug) = query.client.as_deref() {
                principal.client_in_path(slug)?;
            }
            Some(own.clone())
        }
        _ => return Err(ApiError::Forbidden("the audit log is for admins and a client's own people".into())),
    };
    let page = page_request(query.cursor.as_deref(), query.limit)?;
    let page = state.db.audit_log(client, page).await?;
    Ok(Json(AuditPage { next_cursor: next_cursor(page.next.as_ref()), entries: page.items }))
}
