//! A fake GitHub with state, on a real socket (127.0.0.1:0). Every request is recorded and
//! checked against the OpenAPI subset in `fixtures/forge-apis/github-openapi-subset.json`:
//! method and path must be a known operation, path parameters must have their type, query
//! parameters must be declared, and a JSON body must satisfy the operation's request schema
//! and carry no property the schema does not name. A request the real API would reject is a
//! violation (answered 422, like GitHub) and `assert_clean` fails the test.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::{Api, query_of};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub op: String,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub edits: usize,
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    pub pulls: BTreeMap<u64, Value>,
    pub permissions: BTreeMap<String, String>,
    pub comments: Vec<Comment>,
    pub deployments: Vec<Value>,
    pub statuses: Vec<Value>,
    pub deployment_statuses: Vec<(u64, Value)>,
    pub reactions: Vec<(u64, String)>,
    /// Forced answers: (operation id, status, headers), used once each, in order.
    pub faults: VecDeque<Fault>,
    /// Set by `enable_app`: the fake then checks App credentials (see `fake_app`).
    pub app: Option<super::fake_app::AppAuth>,
    /// Answers `pulls/get` for a number not in `pulls` (set by `set_pull_fn`).
    pub pull_fn: Option<PullFn>,
    /// Set by `set_lean`: no history is kept (requests, statuses, comments, deployments,
    /// reactions), only `op_counts`, so a long load test's fake does not grow.
    pub lean: bool,
    /// Requests by operation id, kept in lean mode too.
    pub op_counts: BTreeMap<String, u64>,
    /// Tokens GitHub refuses (401 "Bad credentials") on every call, as it does a revoked one.
    pub revoked: Vec<String>,
    next_id: u64,
}

/// Makes the pull request numbered `n`, or `None` for 404.
pub type PullFn = Arc<dyn Fn(u64) -> Option<Value> + Send + Sync>;

/// A forced answer: operation id, status, headers; used once.
pub type Fault = (String, u16, Vec<(String, String)>);

#[derive(Clone)]
pub struct FakeGitHub {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    api: Arc<Api>,
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let state = Arc::new(Mutex::new(State {
            next_id: 1000,
            ..State::default()
        }));
        let api = Arc::new(Api::github());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake GitHub");
        let addr = listener.local_addr().expect("addr");
        let fake = FakeGitHub { addr, state, api };
        super::fake_http::serve(listener, fake.clone());
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a pull request in the fake's state (the payload's `pull_request` object).
    pub fn set_pull(&self, pr: Value) {
        let n = pr["number"].as_u64().expect("PR number");
        self.lock().pulls.insert(n, pr);
    }

    /// Answers `pulls/get` for any number not set by `set_pull` with `f(number)`.
    pub fn set_pull_fn(&self, f: impl Fn(u64) -> Option<Value> + Send + Sync + 'static) {
        self.lock().pull_fn = Some(Arc::new(f));
    }

    /// Keeps no history from now on (see `State::lean`); `op_count` still counts.
    pub fn set_lean(&self) {
        self.lock().lean = true;
    }

    /// Requests made for operation `op` (kept in lean mode too).
    pub fn op_count(&self, op: &str) -> u64 {
        self.lock().op_counts.get(op).copied().unwrap_or(0)
    }

    pub fn set_permission(&self, user: &str, permission: &str) {
        self.lock()
            .permissions
            .insert(user.to_owned(), permission.to_owned());
    }

    /// From now on `token` is refused, as GitHub refuses a revoked token.
    pub fn revoke(&self, token: &str) {
        self.lock().revoked.push(token.to_owned());
    }

    pub fn fault(&self, op: &str, status: u16, headers: &[(&str, &str)]) {
        self.lock().faults.push_back((
            op.to_owned(),
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn ops(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.op).collect()
    }

    /// Checks that a removal was reported for PR `pr` of `repo`: the last deployment status
    /// is `inactive` with `description`, on `deployment`. Returns the PR's sticky comment.
    /// The body of the first comment containing `needle`, waiting up to 30 s for it: reports
    /// edit the sticky comment after the commit status, so a test that saw a status must wait
    /// for the comment too.
    pub async fn comment_containing(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let found = self
                .lock()
                .comments
                .iter()
                .find(|c| c.body.contains(needle))
                .map(|c| c.body.clone());
            if let Some(body) = found {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no comment containing {needle:?} within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn removal_reported(
        &self,
        repo: &str,
        pr: u64,
        deployment: u64,
        description: &str,
    ) -> String {
        let st = self.lock();
        let (dep, status) = st.deployment_statuses.last().expect("a deployment status");
        assert_eq!(*dep, deployment);
        assert_eq!(status["state"], "inactive", "{status}");
        assert_eq!(status["description"], description);
        let marker = format!("<!-- previewd:{repo}#{pr} -->");
        st.comments
            .iter()
            .find(|c| c.issue == pr && c.body.contains(&marker))
            .expect("the sticky comment")
            .body
            .clone()
    }

    /// Fails the test if any request would have been rejected by GitHub.
    pub fn assert_clean(&self) {
        let v = self.lock().violations.clone();
        assert!(
            v.is_empty(),
            "requests GitHub would reject:\n{}",
            v.join("\n")
        );
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let path = uri.path().to_owned();
        let query = query_of(&uri);
        let Some((op, params)) = self.api.find(method.as_str(), &path) else {
            return self.violation(
                format!("{method} {path}: no such operation"),
                "unknown",
                &path,
            );
        };
        let mut problems = Vec::new();
        let json_body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("body is not JSON: {e}"));
                    Value::Null
                }
            }
        };
        problems.extend(self.api.check_request(op, &params, &query, &json_body));
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let refused =
            self.lock().app.as_mut().and_then(|app| {
                super::fake_app::check(app, &op.id, authorization.as_deref()).err()
            });
        // A revoked token, or none where GitHub wants one, is refused before anything else.
        let token = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "));
        let revoked = token.is_some_and(|t| self.lock().revoked.iter().any(|r| r == t));
        let unauthenticated = token.is_none() && op.id == "users/get-authenticated";
        {
            let mut st = self.lock();
            *st.op_counts.entry(op.id.clone()).or_default() += 1;
        }
        self.lock().requests.push(Recorded {
            op: op.id.clone(),
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body: json_body.clone(),
            authorization,
        });
        if revoked || unauthenticated {
            let message = if revoked {
                "Bad credentials"
            } else {
                "Requires authentication"
            };
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": message})),
            )
                .into_response();
        }
        if let Some(r) = refused {
            if r.violation {
                self.lock().violations.push(r.message.clone());
            }
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "Bad credentials", "detail": r.message})),
            )
                .into_response();
        }
        if !problems.is_empty() {
            return self.violation(
                format!("{} {path}: {}", op.id, problems.join("; ")),
                &op.id,
                &path,
            );
        }
        let fault = {
            let mut st = self.lock();
            let pos = st.faults.iter().position(|(o, _, _)| *o == op.id);
            pos.and_then(|p| st.faults.remove(p))
        };
        if let Some((_, status, hdrs)) = fault {
            let mut resp = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"message": "injected fault"})),
            )
                .into_response();
            for (k, v) in hdrs {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    axum::http::HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().insert(k, v);
                }
            }
            return resp;
        }
        let resp = super::fake_github_ops::answer(self, &op.id, &params, &query, json_body);
        let mut st = self.lock();
        if st.lean {
            st.requests.clear();
            st.statuses.clear();
            st.deployment_statuses.clear();
            st.deployments.clear();
            st.comments.clear();
            st.reactions.clear();
        }
        resp
    }

    fn violation(&self, msg: String, op: &str, path: &str) -> Response {
        let mut st = self.lock();
        st.violations.push(msg.clone());
        if op == "unknown" {
            st.requests.push(Recorded {
                op: op.to_owned(),
                method: String::new(),
                path: path.to_owned(),
                query: BTreeMap::new(),
                body: Value::Null,
                authorization: None,
            });
        }
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"message": "Validation Failed", "detail": msg})),
        )
            .into_response()
    }

    pub(crate) fn next_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        st.next_id
    }
}

impl super::fake_http::Handles for FakeGitHub {
    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.handle(method, uri, headers, body)
    }
}
