//! `GET /tls/ask?domain=<host>` on the admin listener: Caddy's on-demand TLS permission
//! question, answered 200 only for the host of a live preview (403 otherwise, and on any
//! doubt). The gateway previewd runs asks an equivalent listener inside its own container
//! (see `preview::gateway`); this one is for operators who put their own Caddy in front.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;

use super::AppState;
use crate::engine::PreviewStatus;

/// The host part of a preview URL (`https://abc.example.com:8443/x` → `abc.example.com`).
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (!host.is_empty()).then_some(host)
}

pub async fn ask(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> StatusCode {
    let Some(domain) = q
        .get("domain")
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
    else {
        return StatusCode::BAD_REQUEST;
    };
    match tokio::time::timeout(Duration::from_secs(5), state.engine.list()).await {
        Ok(Ok(previews)) => {
            let live = previews
                .iter()
                .filter(|p| matches!(p.status, PreviewStatus::Running | PreviewStatus::Sleeping))
                .any(|p| url_host(&p.url) == Some(domain.as_str()));
            if live {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            }
        }
        // Fail closed: no certificate when we cannot tell.
        _ => StatusCode::FORBIDDEN,
    }
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn hosts_come_out_of_preview_urls() {
        assert_eq!(url_host("http://abc.localhost:8000"), Some("abc.localhost"));
        assert_eq!(
            url_host("https://abc.p.example.com/x"),
            Some("abc.p.example.com")
        );
        assert_eq!(
            url_host("https://abc.example.com:8443/"),
            Some("abc.example.com")
        );
        assert_eq!(url_host("nonsense"), None);
        assert_eq!(url_host("https://"), None);
    }
}
