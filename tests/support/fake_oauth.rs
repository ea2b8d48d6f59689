//! A fake GitHub (or, with `start_gitea`, Gitea; with `start_gitlab`, GitLab) for visitors'
//! sign-in, with state, on a real socket: the OAuth web flow (authorize page with a consent
//! button, code, token exchange) and the two REST calls previewd makes with the visitor's
//! token (`GET /user`, and `GET /repos/{owner}/{repo}` or GitLab's `GET /projects/{id}`).
//! Every request is checked against `fixtures/forge-apis/<forge>-oauth.json` (hand-written
//! from each forge's documentation: parameters allowed and required, at the forge's own
//! paths), Gitea's and GitLab's REST calls and answers against their OpenAPI subsets, and the
//! codes are single-use and bound to the client and redirect address, as the forges' are. A
//! request the forge would reject is a violation; `assert_clean` fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::query_of;

pub const CLIENT_ID: &str = "Iv1.fakeclient";
pub const CLIENT_SECRET: &str = "fake-oauth-client-secret";

#[derive(Default)]
pub struct State {
    /// The user who is signed in to the fake forge (the browser's forge session).
    pub user: String,
    /// Users who may read each repository.
    pub readers: BTreeMap<String, BTreeSet<String>>,
    /// `false`: the consent page waits for a click; `true`: it clicks itself.
    pub auto_consent: bool,
    /// code -> (user, redirect_uri)
    codes: BTreeMap<String, (String, String)>,
    /// token -> user
    tokens: BTreeMap<String, String>,
    pub violations: Vec<String>,
    /// Requests by endpoint name.
    pub counts: BTreeMap<String, u64>,
    next: u64,
}

#[derive(Clone)]
pub struct FakeOAuth {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    spec: Arc<Value>,
    /// Where the REST API lives (`/api/v1` for Gitea) and, when the fixtures describe it, its
    /// description: requests and answers are checked against it.
    prefix: &'static str,
    api: Option<Arc<super::openapi::Api>>,
    /// GitLab names and answers things its own way (`username`, projects by path).
    gitlab: bool,
}

impl FakeOAuth {
    pub async fn start() -> FakeOAuth {
        Self::start_with("github-oauth.json", "", None).await
    }

    /// A fake Gitea: the same flow at Gitea's paths, its REST calls checked against
    /// `gitea-openapi-subset.json`.
    pub async fn start_gitea() -> FakeOAuth {
        let api = super::openapi::Api::swagger2("gitea-openapi-subset.json");
        Self::start_with("gitea-oauth.json", "/api/v1", Some(Arc::new(api))).await
    }

    /// A fake GitLab: its OAuth2 provider at `/oauth/...`, its REST calls under `/api/v4`
    /// checked against `gitlab-openapi-subset.json`.
    pub async fn start_gitlab() -> FakeOAuth {
        let api = super::openapi::Api::openapi3("gitlab-openapi-subset.json");
        Self::start_with("gitlab-oauth.json", "/api/v4", Some(Arc::new(api))).await
    }

    async fn start_with(
        file: &str,
        prefix: &'static str,
        api: Option<Arc<super::openapi::Api>>,
    ) -> FakeOAuth {
        let spec = serde_json::from_slice(
            &std::fs::read(super::fixtures_dir().join("forge-apis").join(file)).expect(file),
        )
        .expect("json");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake OAuth");
        let fake = FakeOAuth {
            addr: listener.local_addr().expect("addr"),
            state: Arc::new(Mutex::new(State::default())),
            spec: Arc::new(spec),
            prefix,
            api,
            gitlab: file.starts_with("gitlab"),
        };
        super::fake_http::serve(listener, fake.clone());
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sign_in_as(&self, user: &str) {
        self.lock().user = user.to_owned();
    }

    pub fn grant(&self, repo: &str, user: &str) {
        self.lock()
            .readers
            .entry(repo.to_owned())
            .or_default()
            .insert(user.to_owned());
    }

    pub fn calls(&self) -> u64 {
        self.lock().counts.values().sum()
    }

    pub fn assert_clean(&self) {
        let v = self.lock().violations.clone();
        assert!(
            v.is_empty(),
            "requests GitHub would reject:\n{}",
            v.join("\n")
        );
    }

    fn violation(&self, msg: String) -> Response {
        self.lock().violations.push(msg.clone());
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"message": msg})),
        )
            .into_response()
    }

    /// Checks `params` against the fixture's `required` and `optional` names of `op`.
    fn check(&self, op: &str, params: &BTreeMap<String, String>) -> Option<Response> {
        let spec = &self.spec[op];
        let names = |k: &str| -> Vec<String> {
            spec[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (required, optional) = (names("required"), names("optional"));
        for r in &required {
            if !params.contains_key(r) {
                return Some(self.violation(format!("{op}: {r} is required")));
            }
        }
        for k in params.keys() {
            if !required.contains(k) && !optional.contains(k) {
                return Some(self.violation(format!("{op}: {k} is not a documented parameter")));
            }
        }
        None
    }

    /// A REST answer, checked against the API's description when the fixtures have one.
    fn rest(&self, method: &Method, path: &str, status: u16, body: Value) -> Response {
        if let Some(api) = &self.api {
            let full = format!(
                "{}{}",
                self.prefix,
                path.strip_prefix(self.prefix).unwrap_or(path)
            );
            if let Some((op, _)) = api.find(method.as_str(), &full) {
                let wrong = api.check_response(op, status, &body);
                if !wrong.is_empty() {
                    self.lock()
                        .violations
                        .push(format!("answer to {full}: {}", wrong.join("; ")));
                }
            }
        }
        (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let full = uri.path().to_owned();
        let query = query_of(&uri);
        if let Some(api) = &self.api
            && full.starts_with(self.prefix)
            && !self.prefix.is_empty()
        {
            match api.find(method.as_str(), &full) {
                Some((op, params)) => {
                    let problems = api.check_request(op, &params, &query, &Value::Null);
                    if !problems.is_empty() {
                        return self.violation(format!(
                            "{} {full}: {}",
                            op.id,
                            problems.join("; ")
                        ));
                    }
                }
                None => return self.violation(format!("{method} {full}: no such operation")),
            }
        }
        let path = match full.strip_prefix(self.prefix) {
            Some(p) if !self.prefix.is_empty() => p.to_owned(),
            _ => full.clone(),
        };
        let at = |op: &str| self.spec[op]["path"].as_str() == Some(path.as_str());
        let op = match (method.as_str(), path.as_str()) {
            ("GET", _) if at("authorize") => "authorize",
            ("GET", "/login/oauth/consent") => "consent",
            ("POST", _) if at("access_token") => "access_token",
            ("GET", "/user") => "users/get-authenticated",
            ("GET", p)
                if !self.gitlab && p.starts_with("/repos/") && p.matches('/').count() == 3 =>
            {
                "repos/get"
            }
            // GitLab names a project by its URL-encoded path (`octo%2Fprivate`).
            ("GET", p)
                if self.gitlab && p.starts_with("/projects/") && p.matches('/').count() == 2 =>
            {
                "projects/get"
            }
            // The browser asks every origin for its icon; not an API call.
            ("GET", "/favicon.ico") => return StatusCode::NOT_FOUND.into_response(),
            _ => return self.violation(format!("{method} {path}: no such endpoint")),
        };
        *self.lock().counts.entry(op.to_owned()).or_default() += 1;
        match op {
            "authorize" => {
                if let Some(r) = self.check(op, &query) {
                    return r;
                }
                if query["client_id"] != CLIENT_ID {
                    return (StatusCode::NOT_FOUND, "no such OAuth app").into_response();
                }
                let st = self.lock();
                let target = format!(
                    "/login/oauth/consent?{}",
                    serde_urlencoded::to_string([
                        ("state", query.get("state").cloned().unwrap_or_default()),
                        (
                            "redirect_uri",
                            query.get("redirect_uri").cloned().unwrap_or_default()
                        ),
                    ])
                    .unwrap_or_default()
                );
                let click = if st.auto_consent {
                    "<script>document.getElementById('allow').click()</script>"
                } else {
                    ""
                };
                Html(format!(
                    "<!doctype html><html><head><title>Authorize application</title></head>\
                     <body><h1>Authorize previewd test app</h1><p>Signed in to fake GitHub as \
                     <b>{user}</b>. The app asks for scope <code>{scope}</code>.</p>\
                     <p><a id=\"allow\" href=\"{target}\">Authorize</a></p>{click}</body></html>",
                    user = st.user,
                    scope = query.get("scope").cloned().unwrap_or_default(),
                    target = target.replace('&', "&amp;"),
                ))
                .into_response()
            }
            "consent" => {
                let mut st = self.lock();
                st.next += 1;
                let code = format!("code{}", st.next);
                let redirect = query.get("redirect_uri").cloned().unwrap_or_default();
                let user = st.user.clone();
                st.codes.insert(code.clone(), (user, redirect.clone()));
                let sep = if redirect.contains('?') { '&' } else { '?' };
                let to = format!(
                    "{redirect}{sep}{}",
                    serde_urlencoded::to_string([
                        ("code", code.as_str()),
                        (
                            "state",
                            query.get("state").map(String::as_str).unwrap_or_default()
                        ),
                    ])
                    .unwrap_or_default()
                );
                (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
            }
            "access_token" => {
                let params: BTreeMap<String, String> = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .map(|o| {
                        o.into_iter()
                            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .or_else(|| serde_urlencoded::from_bytes(&body).ok())
                    .unwrap_or_default();
                if let Some(r) = self.check(op, &params) {
                    return r;
                }
                let json_wanted = headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("application/json"));
                let mut st = self.lock();
                let answer = if params["client_id"] != CLIENT_ID
                    || params["client_secret"] != CLIENT_SECRET
                {
                    json!({"error": "incorrect_client_credentials"})
                } else {
                    match st.codes.remove(&params["code"]) {
                        Some((user, redirect))
                            if params.get("redirect_uri").is_none_or(|r| *r == redirect) =>
                        {
                            st.next += 1;
                            let token = format!("gho_fake{}", st.next);
                            st.tokens.insert(token.clone(), user);
                            if self.gitlab {
                                json!({"access_token": token, "token_type": "Bearer",
                                       "expires_in": 7200, "refresh_token": "fake-refresh",
                                       "scope": "read_api", "created_at": 1_700_000_000})
                            } else {
                                json!({"access_token": token, "token_type": "bearer", "scope": "repo"})
                            }
                        }
                        _ => json!({"error": "bad_verification_code"}),
                    }
                };
                if json_wanted {
                    axum::Json(answer).into_response()
                } else {
                    let pairs: Vec<(String, String)> = answer
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    serde_urlencoded::to_string(pairs)
                        .unwrap_or_default()
                        .into_response()
                }
            }
            _ => {
                if !query.is_empty() {
                    return self.violation(format!("{op}: takes no query parameters"));
                }
                let st = self.lock();
                let user = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .and_then(|t| st.tokens.get(t).cloned());
                if op == "users/get-authenticated" {
                    let Some(user) = user else {
                        return (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"message": "Requires authentication"})),
                        )
                            .into_response();
                    };
                    drop(st);
                    let me = if self.gitlab {
                        json!({"id": 7, "username": user, "name": user, "state": "active",
                               "locked": false, "bot": false})
                    } else {
                        json!({"login": user, "id": 7, "type": "User"})
                    };
                    return self.rest(&method, &full, 200, me);
                }
                let full = match path.strip_prefix("/projects/") {
                    Some(id) => super::openapi::percent_decode(id),
                    None => path.trim_start_matches("/repos/").to_owned(),
                };
                let readers = st.readers.get(&full).cloned().unwrap_or_default();
                match user.filter(|u| readers.contains(u)) {
                    Some(_) if self.gitlab => {
                        let name = full.rsplit('/').next().unwrap_or_default();
                        let answer = json!({
                            "id": 1, "name": name, "path": name, "path_with_namespace": full,
                            "visibility": "private", "default_branch": "main",
                            // Reporter: may pull, no more.
                            "permissions": {
                                "project_access": {"access_level": 20, "notification_level": 3},
                                "group_access": null,
                            },
                        });
                        drop(st);
                        self.rest(&method, &path, 200, answer)
                    }
                    None if self.gitlab => {
                        drop(st);
                        self.rest(
                            &method,
                            &path,
                            404,
                            json!({"message": "404 Project Not Found"}),
                        )
                    }
                    Some(_) => {
                        let (owner, name) = full.split_once('/').unwrap_or_default();
                        let answer = json!({
                            "id": 1, "name": name, "full_name": full, "private": true,
                            "owner": {"login": owner},
                            "permissions": {"admin": false, "maintain": false, "push": false,
                                            "triage": false, "pull": true},
                        });
                        drop(st);
                        self.rest(&method, &path, 200, answer)
                    }
                    None => {
                        drop(st);
                        self.rest(&method, &path, 404, json!({"message": "Not Found"}))
                    }
                }
            }
        }
    }
}

impl super::fake_http::Handles for FakeOAuth {
    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.handle(method, uri, headers, body)
    }
}
