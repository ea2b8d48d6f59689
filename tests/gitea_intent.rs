//! Gitea's and Forgejo's real payloads (`fixtures/forge-payloads/{gitea,forgejo}/`) and
//! variants of our own from Gitea's documented shapes, read by `forge::gitea::payload` and
//! decided by the same policy as GitHub's: which event becomes which intent, and which is
//! ignored with what reason.

use previewd::config::Triggers;
use previewd::forge::gitea::payload::{Parsed, label_action, parse_event};
use previewd::forge::{ForgeEvent, ForgeKind, PrAction};
use previewd::intent::{Action, Cause, Decision, Policy, Subject};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/forge-payloads")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn policy() -> Policy {
    let t = Triggers {
        labels: vec!["preview".into(), "Kind/Enhancement".into()],
        branches: vec!["*/phase-*".into(), "main".into()],
        command: "/preview".into(),
        allow_forks: false,
    };
    Policy::new(&t, ForgeKind::Gitea, "https://gitea.example.com").expect("policy")
}

fn event(event_type: &str, body: &[u8]) -> ForgeEvent {
    match parse_event(event_type, body).expect("parses") {
        Parsed::Event(e) => e,
        other => panic!("not a plain event: {other:?}"),
    }
}

fn edit(name: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(name)).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn real_payloads_map_to_intents_or_reasons() {
    let p = policy();
    // Opened and synchronized without a trigger label: ignored with the reason.
    for (t, f) in [
        ("pull_request", "gitea/pull_request.opened.json"),
        ("pull_request_sync", "gitea/pull_request.synchronized.json"),
    ] {
        let e = event(t, &fixture(f));
        let ForgeEvent::PullRequest { action, pr, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(matches!(action, PrAction::Opened | PrAction::Synchronize));
        assert!(pr.open && !pr.fork && pr.head_branch == "feature");
        assert_eq!(
            p.decide(&e),
            Decision::Ignore("PR #1 carries no trigger label".into())
        );
    }
    // Merged: the preview goes, keyed on the Gitea forge.
    let e = event(
        "pull_request",
        &fixture("gitea/pull_request.closed.merged.json"),
    );
    let Decision::Act(i) = p.decide(&e) else {
        panic!("closed must act")
    };
    assert_eq!(
        (i.action, i.cause, i.forge),
        (Action::Stop, Cause::Closed, ForgeKind::Gitea)
    );
    let Subject::Branch { key, source, .. } = &i.subject else {
        panic!("{i:?}")
    };
    assert_eq!(key.forge, "gitea");
    assert_eq!(key.repo, "anbraten/test-repo");
    assert_eq!(source, "https://gitea.example.com/anbraten/test-repo.git");
    // A push to a matching branch deploys its commit.
    let e = event("push", &fixture("gitea/push.branch.json"));
    let Decision::Act(i) = p.decide(&e) else {
        panic!("push to main must act")
    };
    assert_eq!(i.action, Action::Deploy);
    assert_eq!(
        i.sha.unwrap().as_str(),
        "29be01c073851cf0db0c6a466e396b725a670453"
    );
    // A comment that is not a command.
    let e = event(
        "pull_request_comment",
        &fixture("gitea/issue_comment.created.json"),
    );
    assert_eq!(
        p.decide(&e),
        Decision::Ignore("comment is not a `/preview` command".into())
    );
    // Forgejo's label change: the whole set, decided against the preview's existence.
    let Parsed::Labels { pr, action, .. } = parse_event(
        "pull_request_label",
        &fixture("forgejo/pull_request.label_updated.json"),
    )
    .expect("parses") else {
        panic!("a label set")
    };
    assert!(
        pr.open,
        "no state in Forgejo's payload: open unless closed_at says otherwise"
    );
    assert_eq!(
        label_action(&pr.labels, p.labels(), false, &action),
        PrAction::Labeled("Kind/Enhancement".into())
    );
}

#[test]
fn documented_variants_of_our_own() {
    let p = policy();
    // A comment command on a PR; the same on an issue (is_pull false).
    let cmd = |is_pull: bool| {
        edit("gitea/issue_comment.created.json", |v| {
            v["comment"]["body"] = json!("/preview stop");
            v["is_pull"] = json!(is_pull);
        })
    };
    let Decision::Act(i) = p.decide(&event("issue_comment", &cmd(true))) else {
        panic!("a command")
    };
    assert_eq!((i.action, i.needs_permission), (Action::Stop, true));
    assert_eq!(
        p.decide(&event("issue_comment", &cmd(false))),
        Decision::Ignore("#2 is an issue, not a pull request".into())
    );
    // An edited comment is not read.
    let edited = edit("gitea/issue_comment.created.json", |v| {
        v["action"] = json!("edited");
        v["comment"]["body"] = json!("/preview");
    });
    assert!(matches!(
        p.decide(&event("issue_comment", &edited)),
        Decision::Ignore(_)
    ));
    // A deleted branch (`delete` event, `ref` a short name): its preview goes.
    let delete = json!({
        "ref": "team/phase-2", "ref_type": "branch", "pusher_type": "user",
        "repository": {"full_name": "o/r"}, "sender": {"login": "dev"}
    });
    let Decision::Act(i) = p.decide(&event("delete", &serde_json::to_vec(&delete).unwrap())) else {
        panic!("a deleted phase branch stops")
    };
    assert_eq!((i.action, i.cause), (Action::Stop, Cause::BranchDeleted));
    // A tag push is not previewed.
    let tag = edit("gitea/push.branch.json", |v| {
        v["ref"] = json!("refs/tags/v1")
    });
    assert!(matches!(p.decide(&event("push", &tag)), Decision::Ignore(r) if r.contains("tag")));
    // Reopened with the label: deploy. Edited: ignored, named.
    let reopened = edit("gitea/pull_request.opened.json", |v| {
        v["action"] = json!("reopened");
        v["pull_request"]["labels"] = json!([{"id": 1, "name": "preview"}]);
    });
    assert!(
        matches!(p.decide(&event("pull_request", &reopened)), Decision::Act(i) if i.action == Action::Deploy)
    );
    let edited = edit("gitea/pull_request.opened.json", |v| {
        v["action"] = json!("edited")
    });
    assert_eq!(
        p.decide(&event("pull_request", &edited)),
        Decision::Ignore("pull_request action `edited` is not used".into())
    );
    // A PR whose head repository was deleted (`head.repo` null): nothing to fetch.
    let gone = edit("gitea/pull_request.opened.json", |v| {
        v["pull_request"]["head"]["repo"] = Value::Null;
        v["pull_request"]["head"]["repo_id"] = json!(-1);
        v["pull_request"]["labels"] = json!([{"id": 1, "name": "preview"}]);
    });
    assert!(
        matches!(p.decide(&event("pull_request", &gone)), Decision::Ignore(r) if r.contains("deleted"))
    );
    // label_cleared: no labels at all.
    let cleared = edit("forgejo/pull_request.label_updated.json", |v| {
        v["action"] = json!("label_cleared");
        v["pull_request"]["labels"] = json!([]);
    });
    let Parsed::Labels { pr, action, .. } = parse_event("pull_request_label", &cleared).unwrap()
    else {
        panic!("a label set")
    };
    assert_eq!(
        label_action(&pr.labels, p.labels(), true, &action),
        PrAction::Unlabeled("preview".into())
    );
    // Not JSON of the shape: an error (400), not a panic.
    assert!(parse_event("pull_request", b"{\"action\": 5}").is_err());
    assert!(parse_event("push", b"[]").is_err());
}
