//! Every row of the trigger mapping: real GitHub payloads (edited where a row needs another
//! label, branch or body) parsed and decided by the policy.

mod support;

use previewd::config::Triggers;
use previewd::engine::PreviewKey;
use previewd::forge::github::payload::parse_event;
use previewd::forge::{PullRequest, Repo};
use previewd::ids::CommitSha;
use previewd::intent::{Action, Cause, Decision, Intent, Policy, Stale, Subject};
use serde_json::{Value, json};
use support::payload_json;

fn policy(allow_forks: bool) -> Policy {
    let t = Triggers {
        labels: vec!["preview".into(), "bug".into()],
        branches: vec!["*/phase-*".into(), "*-patch-*".into()],
        command: "/preview".into(),
        allow_forks,
    };
    Policy::new(&t, previewd::forge::ForgeKind::GitHub, "https://github.com").expect("policy")
}

fn decide_with(p: &Policy, event: &str, fixture: &str, edit: impl FnOnce(&mut Value)) -> Decision {
    let mut v = payload_json(fixture);
    edit(&mut v);
    let body = serde_json::to_vec(&v).unwrap();
    p.decide(&parse_event(event, &body).expect("parses"))
}

fn decide(event: &str, fixture: &str, edit: impl FnOnce(&mut Value)) -> Decision {
    decide_with(&policy(false), event, fixture, edit)
}

fn act(d: Decision) -> Intent {
    match d {
        Decision::Act(i) => i,
        other => panic!("expected an intent, got {other:?}"),
    }
}

fn ignored(d: Decision) -> String {
    match d {
        Decision::Ignore(reason) => reason,
        other => panic!("expected ignored, got {other:?}"),
    }
}

fn set_labels(v: &mut Value, labels: &[&str]) {
    v["pull_request"]["labels"] = labels.iter().map(|l| json!({"name": l})).collect();
}

fn make_fork(v: &mut Value) {
    v["pull_request"]["head"]["repo"]["full_name"] = json!("someone/Hello-World");
}

#[test]
fn labeled_with_a_trigger_label_starts_and_needs_a_writer() {
    let i = act(decide("pull_request", "pull_request.labeled.json", |_| {}));
    assert_eq!((i.action, i.cause), (Action::Deploy, Cause::Label));
    assert!(i.needs_permission);
    assert_eq!(i.sender, "Codertocat");
    match &i.subject {
        Subject::Branch { key, source, pr } => {
            assert_eq!(key.repo, "Codertocat/Hello-World");
            assert_eq!(key.branch, "changes");
            assert_eq!(source, "https://github.com/Codertocat/Hello-World.git");
            assert_eq!(*pr, Some(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        i.sha.as_ref().map(|s| s.as_str()),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
}

#[test]
fn labeled_with_another_label_is_ignored() {
    let r = ignored(decide("pull_request", "pull_request.labeled.json", |v| {
        v["label"]["name"] = json!("documentation");
    }));
    assert!(r.contains("documentation"), "{r}");
}

#[test]
fn unlabeled_last_trigger_label_stops() {
    let i = act(decide("pull_request", "pull_request.labeled.json", |v| {
        v["action"] = json!("unlabeled");
        set_labels(v, &["documentation"]);
    }));
    assert_eq!((i.action, i.cause), (Action::Stop, Cause::Unlabeled));
    assert!(i.needs_permission);
}

#[test]
fn unlabeled_with_a_trigger_label_left_or_another_label_is_ignored() {
    let r = ignored(decide("pull_request", "pull_request.labeled.json", |v| {
        v["action"] = json!("unlabeled");
        set_labels(v, &["preview"]);
    }));
    assert!(r.contains("still carries"), "{r}");
    ignored(decide("pull_request", "pull_request.labeled.json", |v| {
        v["action"] = json!("unlabeled");
        v["label"]["name"] = json!("documentation");
    }));
}

#[test]
fn opened_reopened_synchronize_with_a_trigger_label_start_or_update() {
    for f in [
        "pull_request.opened.json",
        "pull_request.reopened.json",
        "pull_request.synchronize.json",
    ] {
        let i = act(decide("pull_request", f, |_| {}));
        assert_eq!(
            (i.action, i.cause),
            (Action::Deploy, Cause::PullRequestUpdate),
            "{f}"
        );
        assert!(!i.needs_permission, "{f}: the pusher can write");
        let r = ignored(decide("pull_request", f, |v| set_labels(v, &[])));
        assert!(r.contains("no trigger label"), "{f}: {r}");
    }
}

#[test]
fn closed_merged_or_not_stops() {
    for f in [
        "pull_request.closed.merged.json",
        "pull_request.closed.not-merged.json",
    ] {
        let i = act(decide("pull_request", f, |_| {}));
        assert_eq!((i.action, i.cause), (Action::Stop, Cause::Closed), "{f}");
        assert!(!i.needs_permission);
    }
}

#[test]
fn closed_pr_and_unused_actions_are_ignored() {
    ignored(decide("pull_request", "pull_request.labeled.json", |v| {
        v["pull_request"]["state"] = json!("closed");
    }));
    let r = ignored(decide("pull_request", "pull_request.labeled.json", |v| {
        v["action"] = json!("edited");
    }));
    assert!(r.contains("edited"), "{r}");
}

#[test]
fn fork_prs_never_start_on_their_own_unless_allowed() {
    let r = ignored(decide(
        "pull_request",
        "pull_request.synchronize.json",
        make_fork,
    ));
    assert!(r.contains("fork"), "{r}");
    let i = act(decide_with(
        &policy(true),
        "pull_request",
        "pull_request.synchronize.json",
        make_fork,
    ));
    assert_eq!(i.action, Action::Deploy);
    // A label on a fork PR counts, when its sender can write (checked by the worker).
    let i = act(decide(
        "pull_request",
        "pull_request.labeled.json",
        make_fork,
    ));
    assert!(i.needs_permission);
    match i.subject {
        Subject::Branch { source, key, .. } => {
            assert_eq!(source, "https://github.com/someone/Hello-World.git");
            // Keyed apart from the base repository's own `changes` (and any other fork's),
            // so the two never share a preview; the branch to fetch is still `changes`.
            assert_eq!(key.repo, "Codertocat/Hello-World");
            assert_eq!(key.branch, "someone/Hello-World:changes");
            assert_eq!(previewd::engine::git_branch(&key.branch), "changes");
        }
        other => panic!("{other:?}"),
    }
    // A PR whose head repository was deleted cannot be fetched.
    ignored(decide("pull_request", "pull_request.labeled.json", |v| {
        v["pull_request"]["head"]["repo"] = Value::Null;
    }));
}

#[test]
fn push_to_a_matching_branch_starts_or_updates_without_a_pr() {
    let i = act(decide("push", "push.branch.json", |_| {}));
    assert_eq!((i.action, i.cause), (Action::Deploy, Cause::Push));
    match &i.subject {
        Subject::Branch { key, pr, .. } => {
            assert_eq!(key.branch, "ailisp-patch-1");
            assert_eq!(*pr, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(!i.needs_permission);
    let i = act(decide("push", "push.branch.json", |v| {
        v["ref"] = json!("refs/heads/team/phase-2");
    }));
    assert_eq!(i.action, Action::Deploy);
}

#[test]
fn push_elsewhere_tags_and_deletions() {
    let r = ignored(decide("push", "push.branch.json", |v| {
        v["ref"] = json!("refs/heads/main");
    }));
    assert!(r.contains("main"), "{r}");
    // `*` does not cross `/`.
    ignored(decide("push", "push.branch.json", |v| {
        v["ref"] = json!("refs/heads/a/b/phase-1");
    }));
    let r = ignored(decide("push", "push.branch.json", |v| {
        v["ref"] = json!("refs/tags/v1.0.0");
    }));
    assert!(r.contains("tag"), "{r}");
    let i = act(decide("push", "push.branch.json", |v| {
        v["deleted"] = json!(true);
        v["after"] = json!("0000000000000000000000000000000000000000");
    }));
    assert_eq!((i.action, i.cause), (Action::Stop, Cause::BranchDeleted));
}

fn comment(body: &str) -> Decision {
    decide("issue_comment", "issue_comment.created.json", |v| {
        v["comment"]["body"] = json!(body);
    })
}

#[test]
fn commands_on_a_pr() {
    for (body, action) in [
        ("/preview", Action::Deploy),
        ("  /preview\r\nplease", Action::Deploy),
        ("/preview stop", Action::Stop),
        ("/preview status", Action::Status),
    ] {
        let i = act(comment(body));
        assert_eq!(i.action, action, "{body:?}");
        assert_eq!(i.cause, Cause::Command);
        assert!(i.needs_permission, "{body:?}");
        assert_eq!(i.comment_id, Some(546616131));
        assert_eq!(i.subject, Subject::PullRequest { number: 3 });
    }
    let i = act(comment("/preview deploy-everything"));
    assert_eq!(i.action, Action::Help);
}

#[test]
fn comments_that_are_not_commands_are_ignored() {
    for body in ["/build", "please /preview", "/previewx", ""] {
        ignored(comment(body));
    }
    let r = ignored(decide("issue_comment", "issue_comment.created.json", |v| {
        v["comment"]["body"] = json!("/preview");
        v["issue"].as_object_mut().unwrap().remove("pull_request");
    }));
    assert!(r.contains("issue"), "{r}");
    for action in ["edited", "deleted"] {
        ignored(decide("issue_comment", "issue_comment.created.json", |v| {
            v["comment"]["body"] = json!("/preview");
            v["action"] = json!(action);
        }));
    }
    let r = ignored(decide("issue_comment", "issue_comment.created.json", |v| {
        v["comment"]["body"] = json!("/preview");
        v["comment"]["user"]["type"] = json!("Bot");
    }));
    assert!(r.contains("bot"), "{r}");
    // previewd's own answers (a token user, not a Bot) carry its marker.
    ignored(comment("/preview status\n<!-- previewd:reply -->"));
}

#[test]
fn ping_and_unknown_events() {
    let p = policy(false);
    let ping = parse_event("ping", &support::payload("ping.json")).unwrap();
    assert_eq!(p.decide(&ping), Decision::Ping);
    let star = parse_event("star", br#"{"action":"created"}"#).unwrap();
    ignored(p.decide(&star));
}

/// The read-back rules, as the queue's worker and the reconciler apply them: a deploy needs
/// the PR open, on the same head and (for a label or an update) labelled, and an update from a
/// fork needs `allow_forks`; a stop holds unless the label came back or the PR reopened.
#[test]
fn an_intent_still_holds_only_while_the_pr_read_back_agrees() {
    let repo = Repo::parse("Codertocat/Hello-World").unwrap();
    let key = PreviewKey {
        forge: "github".into(),
        repo: repo.full_name(),
        branch: "changes".into(),
    };
    let pr = |open: bool, labels: &[&str]| PullRequest {
        number: 2,
        open,
        head_sha: CommitSha::parse(&"a".repeat(40)).unwrap(),
        head_branch: "changes".into(),
        head_repo: Some(repo.clone()),
        fork: false,
        labels: labels.iter().map(|l| l.to_string()).collect(),
    };
    let p = policy(false);
    let holds = |a, c, pr: &PullRequest| p.still_holds(a, c, &key, &repo, pr);
    let (open, closed, bare) = (
        pr(true, &["preview"]),
        pr(false, &["preview"]),
        pr(true, &[]),
    );
    assert_eq!(holds(Action::Deploy, Cause::Label, &open), Ok(()));
    assert_eq!(
        holds(Action::Deploy, Cause::Push, &closed),
        Err(Stale::Closed)
    );
    assert_eq!(
        holds(Action::Deploy, Cause::PullRequestUpdate, &bare),
        Err(Stale::NoTriggerLabel)
    );
    assert_eq!(holds(Action::Deploy, Cause::Command, &bare), Ok(()));
    let mut moved = open.clone();
    moved.head_branch = "other".into();
    assert_eq!(
        holds(Action::Deploy, Cause::Command, &moved),
        Err(Stale::BranchChanged)
    );
    let mut gone = open.clone();
    gone.head_repo = None;
    assert_eq!(
        holds(Action::Deploy, Cause::Command, &gone),
        Err(Stale::HeadRepositoryDeleted)
    );
    let mut fork = open.clone();
    fork.fork = true;
    fork.head_repo = Repo::parse("someone/Hello-World");
    let fork_key = PreviewKey {
        forge: "github".into(),
        repo: repo.full_name(),
        branch: "someone/Hello-World:changes".into(),
    };
    let update = p.still_holds(
        Action::Deploy,
        Cause::PullRequestUpdate,
        &fork_key,
        &repo,
        &fork,
    );
    assert_eq!(update, Err(Stale::Fork));
    let label = p.still_holds(Action::Deploy, Cause::Label, &fork_key, &repo, &fork);
    assert_eq!(label, Ok(()));
    assert_eq!(p.wanted_preview(&repo, &fork), Some(fork_key));
    assert_eq!(
        holds(Action::Stop, Cause::Unlabeled, &open),
        Err(Stale::LabelAddedAgain)
    );
    assert_eq!(holds(Action::Stop, Cause::Unlabeled, &bare), Ok(()));
    assert_eq!(
        holds(Action::Stop, Cause::Closed, &open),
        Err(Stale::Reopened)
    );
    assert!(p.should_stop(&key, &repo, &closed) && !p.should_stop(&key, &repo, &open));
    assert_eq!(p.wanted_preview(&repo, &open), Some(key.clone()));
    assert_eq!(p.wanted_preview(&repo, &bare), None);
    assert_eq!(Stale::Closed.reason(), "the PR is closed");
}
