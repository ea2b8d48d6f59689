//! End to end on GitLab, as a team runs previewd: a real `serve` with the real engine, the real
//! Caddy gateway and a real git repository (`gitlab.git_url = file://...`), driven by real
//! GitLab merge request payloads sent with the hook's secret token, reporting to the fake
//! GitLab that refuses any request the real API would refuse. The test asserts what a user
//! sees on the merge request: the `previewd` status, the environment and its URL, the note;
//! and, with GitLab failing for a while, that every report still arrives once.

mod e2e_support;
mod engine_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use previewd::engine::PreviewEngine;
use previewd::preview::manager::Manager;
use previewd::serve::{ServeOptions, bind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use e2e_support::DEADLINE;
use engine_support::{GitRepo, TestEnv, eventually};
use support::fake_gitlab::{FakeGitLab, GITLAB_TOKEN};
use support::{fast_retry, fixtures_dir, send};

const PROJECT: &str = "acme/shop";
const SECRET: &str = "gitlab-e2e-secret";
const BRANCH: &str = "changes";
const WRITER: u64 = 5;

struct E2eGitLab {
    env: TestEnv,
    gitlab: FakeGitLab,
    repo: GitRepo,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl E2eGitLab {
    /// `reconcile`: how often the reconciler runs (`None`: serve's default, which no test
    /// outlasts).
    async fn start(name: &str, reconcile: Option<Duration>) -> E2eGitLab {
        let gitlab = FakeGitLab::start().await;
        let repo = GitRepo::at("two-service", &format!("{PROJECT}.git"), BRANCH);
        let git_url = format!("file://{}", repo.root().display());
        let url = gitlab.url();
        let env = TestEnv::with(
            name,
            &[
                ("PREVIEWD_LISTEN", "127.0.0.1:0"),
                ("PREVIEWD_ADMIN_LISTEN", "127.0.0.1:0"),
                ("PREVIEWD_GITLAB_URL", &url),
                ("PREVIEWD_GITLAB_TOKEN", GITLAB_TOKEN),
                ("PREVIEWD_GITLAB_WEBHOOK_SECRET", SECRET),
                ("PREVIEWD_GITLAB_GIT_URL", &git_url),
                ("PREVIEWD_TRIGGERS_LABELS", "preview"),
            ],
        )
        .await;
        gitlab.set_member(PROJECT, WRITER, 30);
        gitlab.set_branch(PROJECT, BRANCH);
        let engine = Manager::connect(env.config.clone()).await.expect("docker");
        let shutdown = CancellationToken::new();
        let options = ServeOptions {
            retry: fast_retry(),
            reconcile_interval: reconcile,
            ..Default::default()
        };
        let server = bind(
            env.config.clone(),
            Arc::new(engine),
            options,
            shutdown.clone(),
        )
        .await
        .expect("bind");
        let addr = server.webhook_addr().expect("addr");
        let admin = server.admin_addr().expect("admin addr");
        let server = tokio::spawn(async move {
            server.run().await.expect("serve runs");
        });
        E2eGitLab {
            env,
            gitlab,
            repo,
            addr,
            admin,
            shutdown,
            server,
        }
    }

    /// Posts a merge request hook for MR !1 at `sha` (`action`, labelled `preview`), after
    /// telling the fake GitLab the same merge request.
    async fn mr(&self, action: &str, sha: &str, oldrev: Option<&str>) {
        let p = fixtures_dir().join("forge-payloads/gitlab/merge_request.update.json");
        let mut hook: Value =
            serde_json::from_slice(&std::fs::read(p).expect("fixture")).expect("json");
        let label = json!([{"id": 1, "title": "preview", "color": "#fff", "type": "ProjectLabel"}]);
        let state = match action {
            "close" => "closed",
            "merge" => "merged",
            _ => "opened",
        };
        hook["project"]["id"] = json!(14);
        hook["project"]["path_with_namespace"] = json!(PROJECT);
        hook["user"]["id"] = json!(WRITER);
        hook["user"]["username"] = json!("dev");
        let a = &mut hook["object_attributes"];
        a["iid"] = json!(1);
        a["action"] = json!(action);
        a["state"] = json!(state);
        a["source_branch"] = json!(BRANCH);
        a["source_project_id"] = json!(14);
        a["target_project_id"] = json!(14);
        a["last_commit"]["id"] = json!(sha);
        a["labels"] = label.clone();
        match oldrev {
            Some(r) => a["oldrev"] = json!(r),
            None => {
                a.as_object_mut().expect("attrs").remove("oldrev");
            }
        }
        hook["labels"] = label;
        self.gitlab.set_merge_request(
            PROJECT,
            json!({
                "id": 901, "iid": 1, "project_id": 14, "title": "t", "state": state,
                "source_branch": BRANCH, "target_branch": "main", "source_project_id": 14,
                "target_project_id": 14, "sha": sha, "labels": ["preview"],
            }),
        );
        let body = hook.to_string();
        let req = hyper::Request::post(format!("http://{}/webhooks/gitlab", self.addr))
            .header("x-gitlab-event", "Merge Request Hook")
            .header("x-gitlab-token", SECRET)
            .header("idempotency-key", nanoid::nanoid!(12))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let (status, text) = send(req).await;
        assert_eq!(status, 202, "{action}: {text}");
    }

    /// Waits for the `previewd` status `state` on `sha`; another final state fails at once.
    async fn status(&self, sha: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let seen: Vec<Value> = self
                .gitlab
                .lock()
                .statuses
                .iter()
                .filter(|(_, s, _)| s == sha)
                .map(|(_, _, b)| b.clone())
                .collect();
            if let Some(s) = seen.iter().find(|s| s["state"] == state) {
                return s.clone();
            }
            let wrong = state != "running"
                && seen
                    .iter()
                    .any(|s| s["state"] != "running" && s["state"] != state);
            if wrong || std::time::Instant::now() >= deadline {
                let notes: Vec<String> = self
                    .gitlab
                    .lock()
                    .notes
                    .iter()
                    .map(|n| n.body.clone())
                    .collect();
                panic!("waiting for {state} on {sha}: {seen:#?}\nnotes: {notes:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, url: &str, path: &str) -> (u16, String) {
        let id = url
            .trim_start_matches("http://")
            .split('.')
            .next()
            .expect("id in URL");
        self.env.get(id, path).await
    }

    async fn metrics(&self) -> String {
        let req = hyper::Request::get(format!("http://{}/metrics", self.admin))
            .body(Full::new(Bytes::new()))
            .expect("request");
        send(req).await.1
    }

    async fn stop(self) {
        self.gitlab.assert_clean();
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_merge_request_gets_a_preview_an_environment_and_loses_both_when_closed() {
    let e = E2eGitLab::start("e2e-gitlab", None).await;
    let sha1 = e.repo.commit("nothing new").to_string();

    // Opened with the label: running, then success whose URL serves the commit.
    e.mr("open", &sha1, None).await;
    e.status(&sha1, "running").await;
    let ok = e.status(&sha1, "success").await;
    assert_eq!(ok["name"], "previewd");
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    let (status, body) = e.get(&url, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("previewd sample: web"), "{body}");
    // The environment points at the URL ("View app"), its deployment succeeded.
    eventually(
        DEADLINE,
        "the environment to point at the preview",
        || async {
            let st = e.gitlab.lock();
            st.environments
                .iter()
                .any(|env| {
                    env.name == format!("preview/{BRANCH}")
                        && env.external_url.as_deref() == Some(url.as_str())
                })
                .then_some(())
        },
    )
    .await;
    eventually(DEADLINE, "the sticky note with the URL", || async {
        let st = e.gitlab.lock();
        st.notes.iter().any(|n| n.body.contains(&url)).then_some(())
    })
    .await;

    // A new commit: the same URL serves it; the note is edited, not doubled.
    e.repo
        .write("web/index.html", "<h1>previewd sample: web v2</h1>");
    let sha2 = e.repo.commit("v2").to_string();
    e.mr("update", &sha2, Some(&sha1)).await;
    let ok2 = e.status(&sha2, "success").await;
    assert_eq!(ok2["target_url"], url.as_str());
    let (_, body) = e.get(&url, "/").await;
    assert!(body.contains("web v2"), "{body}");
    assert_eq!(e.gitlab.lock().notes.len(), 1, "one sticky note");

    // Closed: nothing left, the environment stopped and deleted, the note says so.
    e.mr("close", &sha2, None).await;
    eventually(
        DEADLINE,
        "the environment to be stopped and deleted",
        || async {
            let st = e.gitlab.lock();
            st.environments
                .iter()
                .all(|env| env.state == "stopped" && env.deleted)
                .then_some(())
        },
    )
    .await;
    eventually(DEADLINE, "everything to be removed", || async {
        let (c, n, _) = e.env.objects().await;
        (c.is_empty() && n.is_empty()).then_some(())
    })
    .await;
    e.env.assert_clean().await;
    e.stop().await;
}

/// Fault: GitLab answers 500, 502 and 503 for a while on every call a deployment makes
/// (reading the MR back, the status, the environment and its deployment, the note). Once it
/// answers again everything is delivered, once, and the preview serves as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_outage_delays_the_reports_and_loses_none() {
    let e = E2eGitLab::start("e2e-gitlab-fault", None).await;
    for op in [
        "getApiV4ProjectsIdMergeRequestsMergeRequestIid",
        "postApiV4ProjectsIdStatusesSha",
        "getApiV4ProjectsIdEnvironments",
        "postApiV4ProjectsIdEnvironments",
        "postApiV4ProjectsIdDeployments",
        "putApiV4ProjectsIdDeploymentsDeploymentId",
        "getApiV4ProjectsIdMergeRequestsNoteableIdNotes",
        "postApiV4ProjectsIdMergeRequestsNoteableIdNotes",
    ] {
        for status in [500, 502, 503] {
            e.gitlab.fault(op, status);
        }
    }
    let sha = e.repo.commit("nothing new").to_string();
    e.mr("open", &sha, None).await;
    let ok = e.status(&sha, "success").await;
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    eventually(DEADLINE, "the note and the environment", || async {
        let st = e.gitlab.lock();
        let note = st.notes.iter().any(|n| n.body.contains(&url));
        let env = st
            .environments
            .iter()
            .any(|env| env.external_url.as_deref() == Some(url.as_str()));
        (note && env).then_some(())
    })
    .await;
    {
        let st = e.gitlab.lock();
        assert!(st.faults.is_empty(), "every fault was hit: {:?}", st.faults);
        let states: Vec<_> = st
            .statuses
            .iter()
            .map(|(_, _, b)| b["state"].clone())
            .collect();
        assert_eq!(
            states,
            vec![json!("running"), json!("success")],
            "{states:?}"
        );
        assert_eq!(st.notes.len(), 1, "one sticky note");
        assert!(
            st.deployments
                .iter()
                .any(|(_, _, d)| d["status"] == "success"),
            "the deployment's success delivered"
        );
    }
    let (status, page) = e.get(&url, "/").await;
    assert_eq!(status, 200, "{page}");
    e.mr("close", &sha, None).await;
    eventually(DEADLINE, "everything to be removed", || async {
        let (c, n, _) = e.env.objects().await;
        (c.is_empty() && n.is_empty()).then_some(())
    })
    .await;
    e.env.assert_clean().await;
    e.stop().await;
}

/// Fault: GitLab is down (500 on everything) for longer than the retry budget while the
/// preview builds. The ready report is lost, the preview is not; once GitLab answers again the
/// reconciler says the true status again, and the merge request ends as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gitlab_outage_the_merge_request_ends_with_the_true_status() {
    let e = E2eGitLab::start("e2e-gitlab-down", Some(Duration::from_secs(2))).await;
    let sha = e.repo.commit("nothing new").to_string();
    e.mr("open", &sha, None).await;
    e.status(&sha, "running").await;
    eventually(DEADLINE, "the building note", || async {
        let st = e.gitlab.lock();
        st.notes
            .iter()
            .any(|n| n.body.contains("Building preview"))
            .then_some(())
    })
    .await;
    e.gitlab.go_down();
    eventually(DEADLINE, "the ready report to fail", || async {
        let m = e.metrics().await;
        (m.contains(r#"previewd_forge_errors_total{call="commit-status"}"#)
            && m.contains(r#"previewd_forge_errors_total{call="sticky-comment"}"#))
        .then_some(())
    })
    .await;
    let states: Vec<Value> = e
        .gitlab
        .lock()
        .statuses
        .iter()
        .map(|(_, _, b)| b["state"].clone())
        .collect();
    assert_eq!(states, vec![json!("running")], "{states:?}");
    let previews = e.env.manager.list().await.expect("list");
    let url = previews.first().expect("the preview runs").url.clone();
    assert_eq!(e.get(&url, "/").await.0, 200, "serving through the outage");
    // GitLab is back: the reconciler says the true status again.
    e.gitlab.recover();
    let ok = e.status(&sha, "success").await;
    assert_eq!(ok["target_url"], url.as_str());
    eventually(DEADLINE, "the note with the URL", || async {
        let st = e.gitlab.lock();
        st.notes.iter().any(|n| n.body.contains(&url)).then_some(())
    })
    .await;
    e.mr("close", &sha, None).await;
    eventually(DEADLINE, "everything to be removed", || async {
        let (c, n, _) = e.env.objects().await;
        (c.is_empty() && n.is_empty()).then_some(())
    })
    .await;
    e.env.assert_clean().await;
    e.stop().await;
}
