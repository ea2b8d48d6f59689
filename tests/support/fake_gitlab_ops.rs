//! The fake GitLab's answers, operation by operation, with the state rules the real GitLab
//! keeps: a commit status refuses a repeat of the state it has (400 "Cannot transition
//! status"), an environment is deleted only once stopped, an emoji is awarded once per note
//! (404 after), a missing member, branch, project or merge request is a 404. Requests reach
//! here only once `fake_gitlab` has checked them against the API description.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::fake_gitlab::{Env, FakeGitLab, Note, percent_decode};

type Answer = (u16, Value);

fn not_found(what: &str) -> Answer {
    (404, json!({"message": format!("404 {what} Not Found")}))
}

const NOW: &str = "2026-01-01T00:00:00.000Z";

fn env_json(e: &Env) -> Value {
    json!({
        "id": e.id, "name": e.name, "slug": e.name.replace('/', "-"), "state": e.state,
        "external_url": e.external_url, "tier": "development",
        "created_at": NOW, "updated_at": NOW,
    })
}

fn note_json(n: &Note, author: &(u64, String)) -> Value {
    json!({
        "id": n.id, "body": n.body, "noteable_type": "MergeRequest", "noteable_iid": n.iid,
        "system": false, "created_at": NOW, "updated_at": NOW,
        "author": {"id": author.0, "username": author.1, "name": author.1},
    })
}

pub fn answer(
    fake: &FakeGitLab,
    op: &str,
    params: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
    body: Value,
) -> Answer {
    let project = params
        .get("id")
        .map(|p| percent_decode(p))
        .unwrap_or_default();
    let int = |k: &str| {
        params
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut st = fake.lock();
    let user = st.user.clone();
    match op {
        "getApiV4User" => (
            200,
            json!({"id": user.0, "username": user.1, "name": user.1, "bot": true}),
        ),
        "getApiV4ProjectsId" => match project
            .parse::<u64>()
            .ok()
            .and_then(|id| st.projects.get(&id))
        {
            Some(path) => (200, json!({"id": int("id"), "path_with_namespace": path})),
            None => not_found("Project"),
        },
        "getApiV4ProjectsIdMergeRequestsMergeRequestIid" => {
            match st.merge_requests.get(&(project, int("merge_request_iid"))) {
                Some(mr) => (200, mr.clone()),
                None => not_found("Merge Request"),
            }
        }
        "getApiV4ProjectsIdMergeRequests" => {
            let state = query.get("state").map(String::as_str).unwrap_or("all");
            let list: Vec<Value> = st
                .merge_requests
                .iter()
                .filter(|((p, _), mr)| *p == project && (state == "all" || mr["state"] == state))
                .map(|(_, mr)| mr.clone())
                .collect();
            (200, Value::Array(list))
        }
        "getApiV4ProjectsIdMembersAllUserId" => match st.members.get(&(project, int("user_id"))) {
            Some(level) => (
                200,
                json!({"id": int("user_id"), "username": format!("user{}", int("user_id")),
                           "access_level": level, "state": "active"}),
            ),
            None => not_found(""),
        },
        "getApiV4ProjectsIdRepositoryBranchesBranch" => {
            let branch = percent_decode(params.get("branch").map(String::as_str).unwrap_or(""));
            if st.branches.contains(&(project, branch.clone())) {
                (
                    200,
                    json!({"name": branch, "commit": {"id": "0".repeat(40)}, "merged": false}),
                )
            } else {
                not_found("Branch")
            }
        }
        "postApiV4ProjectsIdStatusesSha" => {
            let sha = params.get("sha").cloned().unwrap_or_default();
            let name = body["name"]
                .as_str()
                .or(body["context"].as_str())
                .unwrap_or("default");
            let last = st
                .statuses
                .iter()
                .rev()
                .find(|(p, s, b)| *p == project && *s == sha && b["name"] == name)
                .map(|(_, _, b)| b["state"].clone());
            if last.as_ref() == Some(&body["state"]) {
                let (verb, from) = match body["state"].as_str() {
                    Some("running") => ("run", "running"),
                    Some("pending") => ("enqueue", "pending"),
                    Some("success") => ("succeed", "success"),
                    Some("failed") => ("drop", "failed"),
                    _ => ("cancel", "canceled"),
                };
                return (
                    400,
                    json!({"message": format!(
                        "Cannot transition status via :{verb} from :{from} (Reason(s): Status cannot transition via \"{verb}\")"
                    )}),
                );
            }
            st.next_id += 1;
            let id = st.next_id;
            let answer = json!({
                "id": id, "sha": sha, "status": body["state"], "name": name,
                "target_url": body["target_url"], "description": body["description"],
                "created_at": NOW, "allow_failure": false,
            });
            st.statuses.push((project, sha, body));
            (201, answer)
        }
        "getApiV4ProjectsIdEnvironments" => {
            let name = query.get("name");
            let list: Vec<Value> = st
                .environments
                .iter()
                .filter(|e| !e.deleted && e.project == project && name.is_none_or(|n| *n == e.name))
                .map(env_json)
                .collect();
            (200, Value::Array(list))
        }
        "postApiV4ProjectsIdEnvironments" => {
            let name = body["name"].as_str().unwrap_or("").to_owned();
            if st
                .environments
                .iter()
                .any(|e| !e.deleted && e.project == project && e.name == name)
            {
                return (
                    400,
                    json!({"message": {"name": ["has already been taken"]}}),
                );
            }
            st.next_id += 1;
            let env = Env {
                id: st.next_id,
                project,
                name,
                state: "available".into(),
                external_url: body["external_url"].as_str().map(str::to_owned),
                deleted: false,
            };
            let answer = env_json(&env);
            st.environments.push(env);
            (201, answer)
        }
        "putApiV4ProjectsIdEnvironmentsEnvironmentId"
        | "postApiV4ProjectsIdEnvironmentsEnvironmentIdStop"
        | "deleteApiV4ProjectsIdEnvironmentsEnvironmentId" => {
            let id = int("environment_id");
            let Some(env) = st
                .environments
                .iter_mut()
                .find(|e| !e.deleted && e.id == id && e.project == project)
            else {
                return not_found("Environment");
            };
            match op {
                "putApiV4ProjectsIdEnvironmentsEnvironmentId" => {
                    if let Some(u) = body["external_url"].as_str() {
                        env.external_url = Some(u.to_owned());
                    }
                    (200, env_json(env))
                }
                "postApiV4ProjectsIdEnvironmentsEnvironmentIdStop" => {
                    env.state = "stopped".into();
                    (201, env_json(env))
                }
                _ if env.state != "stopped" => (
                    403,
                    json!({"message": "403 Forbidden - The environment must be stopped first"}),
                ),
                _ => {
                    env.deleted = true;
                    (200, env_json(env))
                }
            }
        }
        "postApiV4ProjectsIdDeployments" => {
            let name = body["environment"].as_str().unwrap_or("").to_owned();
            // GitLab makes the environment a deployment names when it does not exist.
            if !st
                .environments
                .iter()
                .any(|e| !e.deleted && e.project == project && e.name == name)
            {
                st.next_id += 1;
                let id = st.next_id;
                st.environments.push(Env {
                    id,
                    project: project.clone(),
                    name,
                    state: "available".into(),
                    external_url: None,
                    deleted: false,
                });
            }
            st.next_id += 1;
            let id = st.next_id;
            let answer = json!({
                "id": id, "iid": id, "ref": body["ref"], "sha": body["sha"],
                "status": body["status"], "created_at": NOW, "updated_at": NOW,
                "environment": {"name": body["environment"]},
            });
            st.deployments.push((project, id, body));
            (201, answer)
        }
        "putApiV4ProjectsIdDeploymentsDeploymentId" => {
            let id = int("deployment_id");
            let Some(d) = st
                .deployments
                .iter()
                .find(|(p, d, _)| *p == project && *d == id)
            else {
                return not_found("Deployment");
            };
            let mut updated = d.2.clone();
            updated["status"] = body["status"].clone();
            let answer = json!({
                "id": id, "iid": id, "ref": updated["ref"], "sha": updated["sha"],
                "status": updated["status"], "created_at": NOW, "updated_at": NOW,
            });
            st.deployments.push((project, id, updated));
            (200, answer)
        }
        "getApiV4ProjectsIdMergeRequestsNoteableIdNotes" => {
            let iid = int("noteable_id");
            let per_page: usize = query
                .get("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(20);
            let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let mut notes: Vec<&Note> = st
                .notes
                .iter()
                .filter(|n| n.project == project && n.iid == iid)
                .collect();
            if query.get("sort").map(String::as_str) != Some("asc") {
                notes.reverse();
            }
            let list: Vec<Value> = notes
                .into_iter()
                .skip((page.max(1) - 1) * per_page)
                .take(per_page)
                .map(|n| note_json(n, &user))
                .collect();
            (200, Value::Array(list))
        }
        "postApiV4ProjectsIdMergeRequestsNoteableIdNotes" => {
            st.next_id += 1;
            let note = Note {
                id: st.next_id,
                project,
                iid: int("noteable_id"),
                body: body["body"].as_str().unwrap_or("").to_owned(),
                edits: 0,
            };
            let answer = note_json(&note, &user);
            st.notes.push(note);
            (201, answer)
        }
        "putApiV4ProjectsIdMergeRequestsNoteableIdNotesNoteId" => {
            let id = int("note_id");
            let Some(n) = st
                .notes
                .iter_mut()
                .find(|n| n.id == id && n.project == project)
            else {
                return not_found("Note");
            };
            if let Some(b) = body["body"].as_str() {
                n.body = b.to_owned();
            }
            n.edits += 1;
            let n = n.clone();
            (200, note_json(&n, &user))
        }
        "postApiV4ProjectsIdMergeRequestsMergeRequestIidNotesNoteIdAwardEmoji" => {
            let note = int("note_id");
            let name = body["name"].as_str().unwrap_or("").to_owned();
            if st.awards.iter().any(|(n, e)| *n == note && *e == name) {
                return not_found("Award Emoji");
            }
            st.next_id += 1;
            let id = st.next_id;
            st.awards.push((note, name.clone()));
            (
                201,
                json!({"id": id, "name": name, "awardable_id": note, "awardable_type": "Note"}),
            )
        }
        other => (
            500,
            json!({"message": format!("the fake does not answer {other}")}),
        ),
    }
}
