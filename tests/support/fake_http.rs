//! How the fake forges and the fake OAuth provider serve: every request, whatever its method
//! and path, goes whole to the fake's own handler (which checks it against the service's API
//! description), on the listener the fake bound, until the test's runtime ends. Nothing here
//! answers a request itself.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

/// A fake that answers each request from its own state.
pub trait Handles: Clone + Send + Sync + 'static {
    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response;
}

/// Serves `fake` on `listener` in the background.
pub fn serve(listener: tokio::net::TcpListener, fake: impl Handles) {
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let f = fake.clone();
            async move { f.answer(method, uri, headers, body) }
        },
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}
