//! A fake Gitea (or Forgejo) with state, on a real socket (127.0.0.1:0), serving `/api/v1`.
//! Every request is recorded and checked against `fixtures/forge-apis/gitea-openapi-subset.json`
//! (`openapi::Api`): a request the real Gitea would refuse is a violation (answered 422) and
//! `assert_clean` fails the test; every answer of the fake is checked against the operation's
//! response schema too, so the fake cannot drift from Gitea's shapes. It demands
//! `Authorization: token <TOKEN>` (401 otherwise), as Gitea does with a token.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::{Api, percent_decode, query_of};

pub const GITEA_TOKEN: &str = "gitea_token_0123456789abcdef";
/// The login previewd's token belongs to.
pub const BOT: &str = "previewd-bot";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub op: String,
    pub path: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub user: String,
    pub edits: usize,
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    pub pulls: BTreeMap<u64, Value>,
    pub permissions: BTreeMap<String, String>,
    pub comments: Vec<Comment>,
    /// (sha, CreateStatusOption body), in order.
    pub statuses: Vec<(String, Value)>,
    pub reactions: Vec<(u64, String)>,
    pub branches: BTreeSet<String>,
    /// Answer 500 to every request while set (an outage).
    pub down: bool,
    /// Requests answered 500 while down.
    pub refused: u64,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeGitea {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    api: Arc<Api>,
}

impl FakeGitea {
    pub async fn start() -> FakeGitea {
        let state = Arc::new(Mutex::new(State {
            next_id: 500,
            ..State::default()
        }));
        let api = Arc::new(Api::swagger2("gitea-openapi-subset.json"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Gitea");
        let addr = listener.local_addr().expect("addr");
        let fake = FakeGitea { addr, state, api };
        super::fake_http::serve(listener, fake.clone());
        fake
    }

    /// The forge's web address (`gitea.url`); its API is under `/api/v1`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_pull(&self, pr: Value) {
        let n = pr["number"].as_u64().expect("PR number");
        self.lock().pulls.insert(n, pr);
    }

    pub fn set_permission(&self, user: &str, permission: &str) {
        self.lock()
            .permissions
            .insert(user.to_owned(), permission.to_owned());
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    pub fn ops(&self) -> Vec<String> {
        self.lock().requests.iter().map(|r| r.op.clone()).collect()
    }

    /// The statuses set on `sha`, oldest first.
    pub fn statuses_of(&self, sha: &str) -> Vec<Value> {
        self.lock()
            .statuses
            .iter()
            .filter(|(s, _)| s == sha)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The sticky comment of PR `pr` (the one carrying previewd's marker), if any.
    pub fn sticky(&self, repo: &str, pr: u64) -> Option<Comment> {
        let marker = format!("<!-- previewd:{repo}#{pr} -->");
        self.lock()
            .comments
            .iter()
            .find(|c| c.issue == pr && c.body.contains(&marker))
            .cloned()
    }

    /// Adds a comment as `user` (a person's command), returning its id.
    pub fn add_comment(&self, issue: u64, user: &str, body: &str) -> u64 {
        let id = self.next_id();
        self.lock().comments.push(Comment {
            id,
            issue,
            body: body.to_owned(),
            user: user.to_owned(),
            edits: 0,
        });
        id
    }

    /// Fails the test if any request would have been refused by Gitea, or any answer of the
    /// fake was not of Gitea's shape.
    pub fn assert_clean(&self) {
        let v = self.lock().violations.clone();
        assert!(
            v.is_empty(),
            "requests Gitea would refuse:\n{}",
            v.join("\n")
        );
    }

    fn next_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        st.next_id
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let path = uri.path().to_owned();
        let query = query_of(&uri);
        let Some((op, params)) = self.api.find(method.as_str(), &path) else {
            return self.violation(format!("{method} {path}: no such operation"));
        };
        let mut problems = Vec::new();
        let json_body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|e| {
                problems.push(format!("body is not JSON: {e}"));
                Value::Null
            })
        };
        problems.extend(self.api.check_request(op, &params, &query, &json_body));
        self.lock().requests.push(Recorded {
            op: op.id.clone(),
            path: path.clone(),
            body: json_body.clone(),
        });
        if self.lock().down {
            self.lock().refused += 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"message": "outage", "url": ""})),
            )
                .into_response();
        }
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("token {GITEA_TOKEN}")) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "token is required", "url": ""})),
            )
                .into_response();
        }
        if !problems.is_empty() {
            return self.violation(format!("{} {path}: {}", op.id, problems.join("; ")));
        }
        let (status, answer) = self.answer(&op.id, &params, &query, json_body);
        if let Some(v) = &answer {
            let wrong = self.api.check_response(op, status.as_u16(), v);
            if !wrong.is_empty() {
                self.lock().violations.extend(wrong);
            }
        }
        match answer {
            Some(v) => (status, axum::Json(v)).into_response(),
            None => status.into_response(),
        }
    }

    fn violation(&self, msg: String) -> Response {
        self.lock().violations.push(msg.clone());
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"message": msg, "url": ""})),
        )
            .into_response()
    }

    fn answer(
        &self,
        op: &str,
        params: &BTreeMap<String, String>,
        query: &BTreeMap<String, String>,
        body: Value,
    ) -> (StatusCode, Option<Value>) {
        let not_found = (
            StatusCode::NOT_FOUND,
            Some(json!({"message": "The target couldn't be found.", "url": ""})),
        );
        let num = |k: &str| {
            params
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match op {
            "userGetCurrent" => (StatusCode::OK, Some(user(BOT))),
            "repoGetPullRequest" => match self.lock().pulls.get(&num("index")) {
                Some(pr) => (StatusCode::OK, Some(pr.clone())),
                None => not_found,
            },
            "repoListPullRequests" => {
                let limit: usize = query
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(30);
                let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let open: Vec<Value> = self
                    .lock()
                    .pulls
                    .values()
                    .filter(|p| query.get("state").is_none_or(|s| p["state"] == s.as_str()))
                    .skip(limit.min(50) * (page.max(1) - 1))
                    .take(limit.min(50))
                    .cloned()
                    .collect();
                (StatusCode::OK, Some(Value::Array(open)))
            }
            "repoGetRepoPermissions" => {
                let who = params.get("collaborator").cloned().unwrap_or_default();
                let p = self
                    .lock()
                    .permissions
                    .get(&who)
                    .cloned()
                    .unwrap_or_else(|| "read".into());
                (
                    StatusCode::OK,
                    Some(json!({"permission": p, "role_name": p, "user": user(&who)})),
                )
            }
            "repoCreateStatus" => {
                let sha = params.get("sha").cloned().unwrap_or_default();
                let id = self.next_id();
                self.lock().statuses.push((sha, body.clone()));
                (
                    StatusCode::CREATED,
                    Some(json!({
                        "id": id,
                        "status": body["state"],
                        "context": body["context"],
                        "description": body["description"],
                        "target_url": body.get("target_url").cloned().unwrap_or(json!("")),
                        "creator": user(BOT),
                        "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z",
                        "url": "",
                    })),
                )
            }
            "issueGetComments" => {
                let issue = num("index");
                let list: Vec<Value> = self
                    .lock()
                    .comments
                    .iter()
                    .filter(|c| c.issue == issue)
                    .map(comment_json)
                    .collect();
                (StatusCode::OK, Some(Value::Array(list)))
            }
            "issueCreateComment" => {
                let id = self.next_id();
                let c = Comment {
                    id,
                    issue: num("index"),
                    body: body["body"].as_str().unwrap_or_default().to_owned(),
                    user: BOT.into(),
                    edits: 0,
                };
                let v = comment_json(&c);
                self.lock().comments.push(c);
                (StatusCode::CREATED, Some(v))
            }
            "issueEditComment" => {
                let id = num("id");
                let mut st = self.lock();
                match st.comments.iter_mut().find(|c| c.id == id) {
                    Some(c) => {
                        c.body = body["body"].as_str().unwrap_or_default().to_owned();
                        c.edits += 1;
                        (StatusCode::OK, Some(comment_json(c)))
                    }
                    None => not_found,
                }
            }
            "issuePostCommentReaction" => {
                let id = num("id");
                let content = body["content"].as_str().unwrap_or_default().to_owned();
                let mut st = self.lock();
                let again = st.reactions.contains(&(id, content.clone()));
                if !again {
                    st.reactions.push((id, content.clone()));
                }
                let status = if again {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let r = json!({"user": user(BOT), "content": content, "created_at": "2026-01-01T00:00:00Z"});
                (status, Some(r))
            }
            "repoGetBranch" => {
                // Gitea decodes the branch (it may hold `/`, sent as `%2F`).
                let b = percent_decode(params.get("branch").map_or("", String::as_str));
                if self.lock().branches.contains(&b) {
                    (StatusCode::OK, Some(json!({"name": b})))
                } else {
                    not_found
                }
            }
            _ => not_found,
        }
    }
}

fn user(login: &str) -> Value {
    json!({"id": 7, "login": login, "login_name": "", "full_name": "", "email": format!("{login}@example.com"), "avatar_url": "", "username": login})
}

fn comment_json(c: &Comment) -> Value {
    json!({
        "id": c.id,
        "body": c.body,
        "user": user(&c.user),
        "html_url": "",
        "issue_url": "",
        "pull_request_url": "",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    })
}

/// A Gitea pull request as `repoGetPullRequest` answers it, from the `opened` fixture:
/// PR `number` of `repo` on `branch` at `sha`, with `labels`. `fork` puts the head in
/// another repository.
pub fn gitea_pull(
    repo: &str,
    number: u64,
    branch: &str,
    sha: &str,
    labels: &[&str],
    open: bool,
    fork: bool,
) -> Value {
    let p = super::fixtures_dir().join("forge-payloads/gitea/pull_request.opened.json");
    let text = std::fs::read_to_string(p).expect("gitea fixture");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let mut pr = v["pull_request"].clone();
    let (owner, name) = repo.split_once('/').expect("owner/name");
    pr["number"] = json!(number);
    pr["state"] = json!(if open { "open" } else { "closed" });
    pr["head"]["ref"] = json!(branch);
    pr["head"]["label"] = json!(branch);
    pr["head"]["sha"] = json!(sha);
    for side in ["head", "base"] {
        pr[side]["repo"]["full_name"] = json!(repo);
        pr[side]["repo"]["name"] = json!(name);
        pr[side]["repo"]["owner"]["login"] = json!(owner);
        pr[side]["repo"]["owner"]["username"] = json!(owner);
    }
    if fork {
        pr["head"]["repo"]["full_name"] = json!(format!("someone/{name}"));
        pr["head"]["repo"]["owner"]["login"] = json!("someone");
        pr["head"]["repo_id"] = json!(99999);
        pr["head"]["repo"]["id"] = json!(99999);
    }
    pr["labels"] = json!(
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"id": i + 1, "name": l, "color": "00aabb", "description": "", "url": ""}))
            .collect::<Vec<_>>()
    );
    pr
}

impl super::fake_http::Handles for FakeGitea {
    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.handle(method, uri, headers, body)
    }
}
