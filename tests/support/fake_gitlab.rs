//! A fake GitLab with state, on a real socket (127.0.0.1:0). Every request is recorded and
//! checked against the OpenAPI 3.0 subset in `fixtures/forge-apis/gitlab-openapi-subset.json`
//! (`GitlabSchema`): method and raw path must be a known operation (`{id}` may be
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
    schema: Arc<GitlabSchema>,
}

impl FakeGitLab {
    pub async fn start() -> FakeGitLab {
        let state = Arc::new(Mutex::new(State {
            next_id: 5000,
            user: (77, "previewd-bot".into()),
            ..State::default()
        }));
        let schema = Arc::new(GitlabSchema::load());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake GitLab");
        let addr = listener.local_addr().expect("addr");
        let fake = FakeGitLab {
            addr,
            state,
            schema,
        };
        let f = fake.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let f = f.clone();
                async move { f.handle(method, uri, headers, body) }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
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
        let ops = self.schema.ops.iter().map(|o| o.id.clone()).collect();
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
        let query = parse_query(uri.query().unwrap_or(""));
        let Some((op, params)) = self.schema.find(method.as_str(), &path) else {
            return self.violation(format!("{method} {path}: no such operation"));
        };
        let json_body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(json!({"__not_json__": true}))
        };
        let problems = op.check(&params, &query, &json_body);
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
        if let Some(problem) = op.check_response(status, &answer) {
            self.lock()
                .violations
                .push(format!("the fake's own answer to {}: {problem}", op.id));
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

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes (a project path `group%2Fproject`, a branch name).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The operations of the GitLab subset, compiled once: where the shared OpenAPI checker would
/// plug in.
pub struct GitlabSchema {
    ops: Vec<Op>,
}

struct Op {
    id: String,
    method: String,
    segments: Vec<String>,
    integer_params: Vec<String>,
    query_params: Vec<String>,
    body: Option<(jsonschema::Validator, Vec<String>)>,
    responses: BTreeMap<u16, jsonschema::Validator>,
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema: `{type: T, nullable}` becomes
/// `{type: [T, "null"]}`, and a nullable `allOf`/`$ref` accepts null too.
fn denullable(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                denullable(child);
            }
            if m.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = m.get("type").cloned() {
                    m.insert("type".into(), json!([t, "null"]));
                } else {
                    let inner = Value::Object(std::mem::take(m));
                    m.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(denullable),
        _ => {}
    }
}

impl GitlabSchema {
    pub fn load() -> GitlabSchema {
        let path = super::fixtures_dir().join("forge-apis/gitlab-openapi-subset.json");
        let text = std::fs::read_to_string(&path).expect("read the GitLab subset");
        let mut doc: Value = serde_json::from_str(&text).expect("subset is JSON");
        denullable(&mut doc);
        let components = doc["components"].clone();
        let compile = |s: &Value| {
            let mut s = s.clone();
            s["components"] = components.clone();
            jsonschema::validator_for(&s).expect("schema compiles")
        };
        let mut ops = Vec::new();
        for (p, methods) in doc["paths"].as_object().expect("paths") {
            for (method, op) in methods.as_object().expect("methods") {
                let mut integer_params = Vec::new();
                let mut query_params = Vec::new();
                for prm in op["parameters"].as_array().cloned().unwrap_or_default() {
                    let name = prm["name"].as_str().expect("name").to_owned();
                    match prm["in"].as_str() {
                        Some("path") if prm["schema"]["type"] == "integer" => {
                            integer_params.push(name)
                        }
                        Some("query") => query_params.push(name),
                        _ => {}
                    }
                }
                let body = op
                    .pointer("/requestBody/content/application~1json/schema")
                    .map(|s| {
                        let resolved = match s["$ref"].as_str() {
                            Some(r) => doc.pointer(r.trim_start_matches('#')).expect("ref").clone(),
                            None => s.clone(),
                        };
                        let props = resolved["properties"]
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        (compile(s), props)
                    });
                let mut responses = BTreeMap::new();
                for (code, r) in op["responses"].as_object().expect("responses") {
                    if let (Ok(code), Some(s)) = (
                        code.parse::<u16>(),
                        r.pointer("/content/application~1json/schema"),
                    ) {
                        responses.insert(code, compile(s));
                    }
                }
                ops.push(Op {
                    id: op["operationId"].as_str().expect("operationId").to_owned(),
                    method: method.to_uppercase(),
                    segments: p.split('/').map(str::to_owned).collect(),
                    integer_params,
                    query_params,
                    body,
                    responses,
                });
            }
        }
        GitlabSchema { ops }
    }

    /// The operation `method path` names, and its raw path parameters.
    fn find(&self, method: &str, path: &str) -> Option<(&Op, BTreeMap<String, String>)> {
        let segs: Vec<&str> = path.split('/').collect();
        self.ops.iter().find_map(|op| {
            if op.method != method || op.segments.len() != segs.len() {
                return None;
            }
            let mut params = BTreeMap::new();
            for (t, s) in op.segments.iter().zip(&segs) {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    if s.is_empty() {
                        return None;
                    }
                    params.insert(name.to_owned(), s.to_string());
                } else if t != s {
                    return None;
                }
            }
            Some((op, params))
        })
    }
}

impl Op {
    fn check(
        &self,
        params: &BTreeMap<String, String>,
        query: &BTreeMap<String, String>,
        body: &Value,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for name in &self.integer_params {
            let v = params.get(name).map(String::as_str).unwrap_or("");
            if v.parse::<u64>().is_err() {
                problems.push(format!("path parameter {name}={v:?} is not an integer"));
            }
        }
        for k in query.keys() {
            if !self.query_params.contains(k) {
                problems.push(format!("query parameter {k} is not declared"));
            }
        }
        match (&self.body, body) {
            (Some((v, props)), b) => {
                let b = if b.is_null() { json!({}) } else { b.clone() };
                for e in v.iter_errors(&b) {
                    problems.push(format!("body: {e} at {}", e.instance_path()));
                }
                for k in b.as_object().map(|o| o.keys().collect()).unwrap_or(vec![]) {
                    if !props.contains(k) {
                        problems.push(format!("body property {k:?} is not in the schema"));
                    }
                }
            }
            (None, b) if !b.is_null() => problems.push("a body where none is expected".into()),
            _ => {}
        }
        problems
    }

    fn check_response(&self, status: u16, body: &Value) -> Option<String> {
        let v = self.responses.get(&status)?;
        // The notes list is documented as one note; it is an array of them (see x-notes).
        let items: Vec<&Value> = match (self.id.as_str(), body) {
            ("getApiV4ProjectsIdMergeRequestsNoteableIdNotes", Value::Array(a)) => {
                a.iter().collect()
            }
            _ => vec![body],
        };
        let errors: Vec<String> = items
            .iter()
            .flat_map(|b| {
                v.iter_errors(b)
                    .map(|e| format!("{e} at {}", e.instance_path()))
            })
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}
