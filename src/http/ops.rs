//! Operational endpoints: liveness, readiness and Prometheus metrics. Unauthenticated and outside the load
//! budgets, so an orchestrator can always reach them.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::error_response;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive", body = Status)))]
pub(super) async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The answer of the health routes.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Status {
    status: &'static str,
}

/// `GET /readyz`: 200 while the store takes writes and every background worker runs; 503 after a commit
/// failed for lack of space or I/O (until one succeeds again), while PostgreSQL cannot be reached, or once a
/// worker has stopped (until restart).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready (503 when not)", body = Status)))]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let down = state.workers.down();
    if !down.is_empty() {
        let message = format!("background workers stopped: {}; see the log", down.join(", "));
        error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", &message)
    } else if state.db.is_ready().await {
        Json(Status { status: "ready" }).into_response()
    } else if state.db.is_postgres() {
        error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the database cannot be reached")
    } else {
        error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the store cannot write; check disk space")
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus metrics")))]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match state.db.outbox_backlog().await {
        Ok(backlog) => state.metrics.set_outbox_backlog(backlog.pending, backlog.sending, backlog.dead),
        Err(error) => tracing::warn!(%error, "reading the outbox backlog for metrics failed"),
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
        .into_response()
}
