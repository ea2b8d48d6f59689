//! `POST /webhooks/gitlab`: 404, unread, when GitLab is not configured. GitLab's receiver
//! (its token or Standard Webhooks signature, its events) is not written yet: a configured
//! GitLab is answered 501 so that its hook shows the delivery failed rather than ignored.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::verify::Refuser;
use crate::forge::ForgeKind;

pub async fn receive(State(state): State<AppState>, req: Request) -> Response {
    let refuser = Refuser {
        state: &state,
        forge: ForgeKind::GitLab,
        event: None,
        delivery: None,
    };
    if let Err(refused) = refuser.configured() {
        return refused.into_response();
    }
    drop(req);
    refuser
        .refuse(
            StatusCode::NOT_IMPLEMENTED,
            "invalid",
            "GitLab webhooks are not read by this previewd yet",
        )
        .into_response()
}
