//! A fake GitLab with state, on a real socket (127.0.0.1:0). Every request is recorded and
//! checked against the OpenAPI 3.0 subset in `fixtures/forge-apis/gitlab-openapi-subset.json`
//! (through `openapi::Api`): method and raw path must be a known operation (`{id}` may be
//! `group%2Fproject`), integer path parameters must be integers, query parameters must be
//! declared, and a JSON body must satisfy the operation's request schema and carry no property
//! it does not name. The fake's own answers are checked against the response schemas too, so
//! a client that reads them reads what GitLab's schema promises. `PRIVATE-TOKEN` must be the
//! test token (else 401, as GitLab answers). A request GitLab would refuse is a violation
//! (answered 400) and `assert_clean` fails the test. `fake_gitlab_ops` holds the answers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use super::openapi::percent_decode;
use super::openapi::{Api, query_of};

pub const GITLAB_TOKEN: &str = "glpat-test-token-0123456789";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub op: String,
    pub method: String,
    /// The raw path, `/api/v4/projects/group%2Fproject/...`.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Note {
    pub id: u64,
    pub project: String,
    pub iid: u64,
    pub body: String,
    pub edits: usize,
}

#[derive(Debug, Clone)]
pub struct Env {
    pub id: u64,
    pub project: String,
    pub name: String,
    pub state: String,
    pub external_url: Option<String>,
    pub deleted: bool,
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    /// Merge requests by (project path, iid), as the REST API gives them.
    pub merge_requests: BTreeMap<(String, u64), Value>,
    /// Projects by number: their paths (for fork merge requests).
    pub projects: BTreeMap<u64, String>,
    /// Access levels by (project path, user id); no entry is no membership (404).
    pub members: BTreeMap<(String, u64), u64>,
    /// (project path, branch) pairs that exist.
    pub branches: BTreeSet<(String, String)>,
    /// Every accepted status: (project as addressed, sha, body).
    pub statuses: Vec<(String, String, Value)>,
    pub environments: Vec<Env>,
    /// (project path, deployment id, status) as created and updated.
    pub deployments: Vec<(String, u64, Value)>,
    pub notes: Vec<Note>,
    /// (note id, emoji name).
    pub awards: Vec<(u64, String)>,
    /// Who the token is (`GET /user`).
    pub user: (u64, String),
    /// Forced answers: (operation id, status), used once each, in order.
    pub faults: VecDeque<(String, u16)>,
    /// Every request of an operation in this set answers 500 until removed (an outage).
    pub down: BTreeSet<String>,
    pub(super) next_id: u64,
}

#[derive(Clone)]
pub struct FakeGitLab {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    api: Arc<Api>,
}

impl FakeGitLab {
    pub async fn start() -> FakeGitLab {
        let state = Arc::new(Mutex::new(State {
            next_id: 5000,
            user: (77, "previewd-bot".into()),
            ..State::default()
        }));
        let api = Arc::new(Api::openapi3("gitlab-openapi-subset.json"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake GitLab");
        let addr = listener.local_addr().expect("addr");
        let fake = FakeGitLab { addr, state, api };
        super::fake_http::serve(listener, fake.clone());
        fake
    }

    /// The instance URL (the API is under `/api/v4`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a merge request (REST shape) of `project` in the fake's state.
    pub fn set_merge_request(&self, project: &str, mr: Value) {
        let iid = mr["iid"].as_u64().expect("iid");
        self.lock()
            .merge_requests
            .insert((project.to_owned(), iid), mr);
    }

    pub fn set_member(&self, project: &str, user_id: u64, access_level: u64) {
        self.lock()
            .members
            .insert((project.to_owned(), user_id), access_level);
    }

    pub fn set_branch(&self, project: &str, branch: &str) {
        self.lock()
            .branches
            .insert((project.to_owned(), branch.to_owned()));
    }

    pub fn set_project(&self, id: u64, path: &str) {
        self.lock().projects.insert(id, path.to_owned());
    }

    pub fn fault(&self, op: &str, status: u16) {
        self.lock().faults.push_back((op.to_owned(), status));
    }

    /// Every operation answers 500 until `recover` (a GitLab outage).
    pub fn go_down(&self) {
        let ops = self.api.ops.iter().map(|o| o.id.clone()).collect();
        self.lock().down = ops;
    }

    pub fn recover(&self) {
        self.lock().down.clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn ops(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.op).collect()
    }

    /// Fails the test if any request would have been refused by GitLab.
    pub fn assert_clean(&self) {
        let v = self.lock().violations.clone();
        assert!(
            v.is_empty(),
            "requests GitLab would refuse:\n{}",
            v.join("\n")
        );
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let path = uri.path().to_owned();
        let query = query_of(&uri);
        let Some((op, params)) = self.api.find(method.as_str(), &path) else {
            return self.violation(format!("{method} {path}: no such operation"));
        };
        let json_body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(json!({"__not_json__": true}))
        };
        let problems = self.api.check_request(op, &params, &query, &json_body);
        self.lock().requests.push(Recorded {
            op: op.id.clone(),
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body: json_body.clone(),
        });
        let token = headers.get("private-token").and_then(|v| v.to_str().ok());
        if token != Some(GITLAB_TOKEN) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "401 Unauthorized"})),
            )
                .into_response();
        }
        if !problems.is_empty() {
            return self.violation(format!("{} {path}: {}", op.id, problems.join("; ")));
        }
        let fault = {
            let mut st = self.lock();
            if st.down.contains(&op.id) {
                Some((op.id.clone(), 500))
            } else {
                let pos = st.faults.iter().position(|(o, _)| *o == op.id);
                pos.and_then(|p| st.faults.remove(p))
            }
        };
        if let Some((_, status)) = fault {
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"message": "injected fault"})),
            )
                .into_response();
        }
        let (status, answer) =
            super::fake_gitlab_ops::answer(self, &op.id, &params, &query, json_body);
        // The notes list is described as one note; GitLab answers an array of them (x-notes).
        let answers = match (op.id.as_str(), &answer) {
            ("getApiV4ProjectsIdMergeRequestsNoteableIdNotes", Value::Array(a)) => a.clone(),
            _ => vec![answer.clone()],
        };
        for a in &answers {
            let problems = self.api.check_response(op, status, a);
            if !problems.is_empty() {
                self.lock()
                    .violations
                    .push(format!("the fake's own answer: {}", problems.join("; ")));
            }
        }
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(answer),
        )
            .into_response()
    }

    fn violation(&self, message: String) -> Response {
        self.lock().violations.push(message.clone());
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": format!("400 Bad request - {message}")})),
        )
            .into_response()
    }
}

impl super::fake_http::Handles for FakeGitLab {
    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.handle(method, uri, headers, body)
    }
}
