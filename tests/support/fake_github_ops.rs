//! The fake GitHub's answers, operation by operation, with just enough state (pulls,
//! comments, deployments, statuses, reactions, permissions) to behave like the real API.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fake_github::{Comment, FakeGitHub};

pub const BOT_LOGIN: &str = "previewd-test[bot]";
/// The user `GET /user` answers with for a (personal access) token.
pub const TOKEN_USER: &str = "previewd-user";

fn ok(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn not_found() -> Response {
    ok(StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
}

fn num(params: &BTreeMap<String, String>, name: &str) -> u64 {
    params.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub fn answer(
    gh: &FakeGitHub,
    op: &str,
    params: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
    body: Value,
) -> Response {
    match op {
        "pulls/list" => {
            let open: Vec<Value> = gh
                .lock()
                .pulls
                .values()
                .filter(|pr| pr["state"] == "open")
                .cloned()
                .collect();
            ok(StatusCode::OK, json!(open))
        }
        "pulls/get" => {
            let n = num(params, "pull_number");
            let (known, make) = {
                let st = gh.lock();
                (st.pulls.get(&n).cloned(), st.pull_fn.clone())
            };
            match known.or_else(|| make.and_then(|f| f(n))) {
                Some(pr) => ok(StatusCode::OK, pr),
                None => not_found(),
            }
        }
        // Trimmed to what the subset's hand-added `private-user` names.
        "users/get-authenticated" => ok(
            StatusCode::OK,
            json!({"login": TOKEN_USER, "id": 4242, "type": "User"}),
        ),
        "repos/get-collaborator-permission-level" => {
            let user = params.get("username").cloned().unwrap_or_default();
            match gh.lock().permissions.get(&user) {
                Some(p) => ok(
                    StatusCode::OK,
                    json!({"permission": p, "user": {"login": user}}),
                ),
                None => not_found(),
            }
        }
        "repos/create-commit-status" => {
            let id = gh.next_id();
            let mut s = body.clone();
            s["id"] = json!(id);
            s["sha"] = json!(params.get("sha"));
            gh.lock().statuses.push(s.clone());
            ok(StatusCode::CREATED, s)
        }
        "issues/create-comment" => {
            let id = gh.next_id();
            let issue = num(params, "issue_number");
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            gh.lock().comments.push(Comment {
                id,
                issue,
                body: text.clone(),
                edits: 0,
            });
            ok(StatusCode::CREATED, comment_json(id, &text))
        }
        "issues/update-comment" => {
            let id = num(params, "comment_id");
            let mut st = gh.lock();
            match st.comments.iter_mut().find(|c| c.id == id) {
                Some(c) => {
                    c.body = body["body"].as_str().unwrap_or_default().to_owned();
                    c.edits += 1;
                    ok(StatusCode::OK, comment_json(id, &c.body))
                }
                None => not_found(),
            }
        }
        "issues/list-comments" => {
            let issue = num(params, "issue_number");
            let per_page: usize = query
                .get("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let all: Vec<Value> = gh
                .lock()
                .comments
                .iter()
                .filter(|c| c.issue == issue)
                .map(|c| comment_json(c.id, &c.body))
                .collect();
            let items: Vec<Value> = all
                .into_iter()
                .skip(per_page * (page.max(1) - 1))
                .take(per_page)
                .collect();
            ok(StatusCode::OK, Value::Array(items))
        }
        "repos/create-deployment" => {
            let id = gh.next_id();
            let mut d = body.clone();
            d["id"] = json!(id);
            d["sha"] = body["ref"].clone();
            gh.lock().deployments.push(d.clone());
            ok(StatusCode::CREATED, d)
        }
        "repos/list-deployments" => {
            let env = query.get("environment").cloned();
            let list: Vec<Value> = gh
                .lock()
                .deployments
                .iter()
                .rev()
                .filter(|d| env.is_none() || d["environment"].as_str() == env.as_deref())
                .cloned()
                .collect();
            ok(StatusCode::OK, Value::Array(list))
        }
        "repos/create-deployment-status" => {
            let id = num(params, "deployment_id");
            let mut st = gh.lock();
            if !st.deployments.iter().any(|d| d["id"] == json!(id)) {
                return not_found();
            }
            st.deployment_statuses.push((id, body.clone()));
            ok(
                StatusCode::CREATED,
                json!({"id": id * 10, "state": body["state"]}),
            )
        }
        "reactions/create-for-issue-comment" => {
            let id = num(params, "comment_id");
            let content = body["content"].as_str().unwrap_or_default().to_owned();
            gh.lock().reactions.push((id, content.clone()));
            ok(
                StatusCode::CREATED,
                json!({"id": gh.next_id(), "content": content}),
            )
        }
        "apps/get-repo-installation" | "apps/create-installation-access-token"
            if gh.lock().app.is_some() =>
        {
            let installation = params.get("installation_id").and_then(|v| v.parse().ok());
            match super::fake_app::answer(gh, op, installation) {
                Some((status, v)) => ok(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    v,
                ),
                None => not_found(),
            }
        }
        "apps/get-repo-installation" => ok(StatusCode::OK, json!({"id": 4242})),
        "apps/create-installation-access-token" => ok(
            StatusCode::CREATED,
            json!({"token": "ghs_installationtoken", "expires_at": "2099-01-01T00:00:00Z"}),
        ),
        _ => ok(StatusCode::NOT_IMPLEMENTED, json!({"message": "not faked"})),
    }
}

fn comment_json(id: u64, body: &str) -> Value {
    json!({"id": id, "body": body, "user": {"login": BOT_LOGIN, "type": "Bot"}})
}
