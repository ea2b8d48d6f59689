//! What people read, pinned: every sticky comment, command reply and status description
//! previewd writes, as snapshots (`tests/snapshots/`). A change to any of them fails here until
//! the snapshot is reviewed and accepted (`cargo insta review`, or `INSTA_UPDATE=always` and a
//! look at the diff), so changing what users read is always a deliberate act.

use std::time::Duration;

use previewd::engine::{
    DeployFailure, Deployed, Phase, PreviewKey, PreviewState, ServiceHealth, Timings,
};
use previewd::forge::Repo;
use previewd::forge::comment::{self, Removal};
use previewd::ids::{CommitSha, PreviewId};

fn repo() -> Repo {
    Repo::parse("acme/shop").expect("repo")
}

fn sha() -> CommitSha {
    CommitSha::parse("4f2c9a1e0d3b5c7a9e1f2d4c6b8a0e2f4d6c8b0a").expect("sha")
}

fn service(name: &str, route: Option<&str>, healthy: bool, status: Option<u16>) -> ServiceHealth {
    ServiceHealth {
        name: name.into(),
        route: route.map(Into::into),
        url: None,
        state: "running".into(),
        healthy,
        status,
        latency_ms: status.map(|_| 9),
    }
}

fn state() -> PreviewState {
    PreviewState {
        id: PreviewId::parse("xh1kg8hlnv").expect("id"),
        url: "http://xh1kg8hlnv.preview.example.com".into(),
        key: PreviewKey {
            forge: "github".into(),
            repo: "acme/shop".into(),
            branch: "feature/cart".into(),
        },
        sha: Some(sha()),
        pr: Some(7),
        status: previewd::engine::PreviewStatus::Running,
        created: None,
        egress: None,
        asleep: None,
        visited: None,
        ready_in: None,
        access: None,
        password: None,
        services: vec![
            service("api", Some("/api"), true, Some(200)),
            service("internal", None, true, None),
            service("web", Some("/"), true, Some(200)),
        ],
    }
}

fn deployed() -> Deployed {
    let s = Duration::from_millis;
    Deployed {
        state: state(),
        timings: Timings {
            phases: vec![
                (Phase::Fetch, s(100)),
                (Phase::Config, s(10)),
                (Phase::Build, s(8100)),
                (Phase::Start, s(1800)),
                (Phase::Route, s(900)),
                (Phase::Health, s(40)),
            ],
            total: s(11_100),
        },
        downtime: Vec::new(),
    }
}

fn failure() -> DeployFailure {
    DeployFailure {
        phase: Phase::Build,
        service: Some("web".into()),
        reason: "The command '/bin/sh -c make' returned a non-zero code: 3".into(),
        log_tail: vec![
            "Step 3/4 : RUN make".into(),
            "compiling...".into(),
            "error: something broke".into(),
        ],
        cancelled: false,
    }
}

#[test]
fn sticky_comments() {
    let (r, s) = (repo(), sha());
    insta::assert_snapshot!("building", comment::building(&r, 7, &s));
    insta::assert_snapshot!("ready", comment::ready(&r, 7, &deployed()));
    insta::assert_snapshot!("failed", comment::failed(&r, 7, &s, &failure()));
    insta::assert_snapshot!("superseded", comment::superseded(&r, 7, &s, "`9b8c7d6`"));
    insta::assert_snapshot!(
        "removed_stopped",
        comment::removed(&r, 7, &Removal::Stopped)
    );
    insta::assert_snapshot!(
        "removed_operator",
        comment::removed(&r, 7, &Removal::Operator)
    );
    let expired = Removal::Expired {
        ttl: Duration::from_secs(72 * 3600),
        command: "/preview".into(),
        sha: Some(s),
    };
    insta::assert_snapshot!("removed_expired", comment::removed(&r, 7, &expired));
    let ready = comment::ready(&r, 7, &deployed());
    let since = "2026-12-07T16:05:09Z";
    insta::assert_snapshot!(
        "sleeping",
        comment::sleeping(&ready, since).expect("a ready comment sleeps")
    );
    let health = DeployFailure {
        phase: Phase::Health,
        reason: "GET / did not answer 200 within 120s (last: answered 502)".into(),
        log_tail: vec!["panic: no database".into()],
        ..failure()
    };
    insta::assert_snapshot!("wake_failed", comment::wake_failed(&r, 7, &sha(), &health));
    let hour = Duration::from_secs(3600);
    for (name, visits) in [("ttl_warning", true), ("ttl_warning_no_visits", false)] {
        let text = comment::ttl_warning(
            &r,
            7,
            "http://xh1kg8hlnv.preview.example.com",
            50 * hour,
            22 * hour,
            visits,
            "/preview",
            "preview:keep",
        );
        insta::assert_snapshot!(name, text);
    }
}

#[test]
fn command_replies() {
    insta::assert_snapshot!("status_none", comment::status_reply(None));
    insta::assert_snapshot!("status_running", comment::status_reply(Some(&state())));
    let asleep = PreviewState {
        status: previewd::engine::PreviewStatus::Sleeping,
        asleep: Some("2026-12-07T16:05:09Z".into()),
        ..state()
    };
    insta::assert_snapshot!("status_sleeping", comment::status_reply(Some(&asleep)));
    insta::assert_snapshot!("help", comment::help("/preview"));
    insta::assert_snapshot!(
        "refused",
        comment::refused("only people with write access can start a preview of a fork")
    );
}

#[test]
fn status_descriptions() {
    let removals = [
        Removal::Stopped,
        Removal::Operator,
        Removal::Expired {
            ttl: Duration::from_secs(3600),
            command: "/preview".into(),
            sha: None,
        },
    ];
    let all = [
        comment::STATUS_BUILDING.to_owned(),
        comment::STATUS_READY.to_owned(),
        comment::status_failed(&failure()),
        comment::status_superseded("`9b8c7d6`"),
        comment::status_superseded("a stop request"),
        comment::status_wake_failed(&failure()),
    ]
    .into_iter()
    .chain(removals.iter().map(|r| r.description().to_owned()))
    .collect::<Vec<_>>()
    .join("\n");
    insta::assert_snapshot!("status_descriptions", all);
    // GitHub refuses a description over 140 characters.
    let long = DeployFailure {
        reason: "x".repeat(500),
        ..failure()
    };
    assert!(comment::status_failed(&long).chars().count() <= 140);
}
