//! The GitLab payloads in `fixtures/forge-payloads/gitlab/`, as GitLab sent them, and variants
//! written from GitLab's webhook documentation (fork merge requests, label edits, deletions,
//! tags, notes elsewhere than on a merge request).

use serde_json::{Value, json};

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/forge-payloads/gitlab/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&bytes).expect("fixture is JSON")
}

fn parse(event: &str, v: &Value) -> ForgeEvent {
    parse_event(event, v.to_string().as_bytes()).expect("parses")
}

fn raw(event: &str, name: &str) -> ForgeEvent {
    let path = format!(
        "{}/fixtures/forge-payloads/gitlab/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).expect("fixture");
    parse_event(event, &bytes).expect("the fixture's own bytes parse")
}

fn pr_of(e: &ForgeEvent) -> (&Repo, &Actor, &PrAction, &PullRequest) {
    match e {
        ForgeEvent::PullRequest {
            repo,
            sender,
            action,
            pr,
        } => (repo, sender, action, pr),
        other => panic!("not a pull request event: {other:?}"),
    }
}

#[test]
fn an_opened_merge_request_is_a_pull_request_of_the_hooks_project() {
    let e = raw("Merge Request Hook", "merge_request.open.json");
    let (repo, sender, action, pr) = pr_of(&e);
    assert_eq!(repo.full_name(), "gitlabhq/gitlab-test");
    assert_eq!(*action, PrAction::Opened);
    assert_eq!(sender.login, "user1");
    assert_eq!(sender.id, Some(1));
    assert!(!sender.is_bot);
    assert_eq!(pr.number, 1);
    assert!(pr.open);
    assert!(!pr.fork, "source and target project ids are the same");
    assert_eq!(pr.head_branch, "ms-viewport");
    assert_eq!(
        pr.head_sha.as_str(),
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    );
    // Not the fork's source path: the same project, so the hook's own.
    assert_eq!(pr.head_repo.as_ref(), Some(repo));
    assert_eq!(pr.labels, vec!["API".to_owned()]);
}

#[test]
fn an_update_with_oldrev_is_a_push_to_the_merge_request() {
    let e = raw("Merge Request Hook", "merge_request.update.json");
    let (repo, _, action, pr) = pr_of(&e);
    assert_eq!(repo.full_name(), "anbraten/woodpecker");
    assert_eq!(*action, PrAction::Synchronize);
    assert_eq!(pr.number, 3);
    assert_eq!(
        pr.head_sha.as_str(),
        "c136499ec574e1034b24c5d306de9acda3005367"
    );
    assert!(pr.labels.is_empty());
    // The same update without `oldrev` and without a label change is some other edit.
    let mut v = fixture("merge_request.update.json");
    v["object_attributes"]
        .as_object_mut()
        .expect("attrs")
        .remove("oldrev");
    assert_eq!(
        *pr_of(&parse("Merge Request Hook", &v)).2,
        PrAction::Other("update".into())
    );
}

#[test]
fn merge_and_close_end_the_merge_request() {
    let e = raw("Merge Request Hook", "merge_request.merge.json");
    let (repo, sender, action, pr) = pr_of(&e);
    assert_eq!(repo.full_name(), "gitlab-org/hello-world");
    assert_eq!(*action, PrAction::Closed { merged: true });
    assert!(!pr.open);
    // This older payload's user has no id: permission checks then have none to ask with.
    assert_eq!(sender.id, None);
    let mut v = fixture("merge_request.merge.json");
    v["object_attributes"]["action"] = json!("close");
    v["object_attributes"]["state"] = json!("closed");
    assert_eq!(
        *pr_of(&parse("Merge Request Hook", &v)).2,
        PrAction::Closed { merged: false }
    );
    v["object_attributes"]["action"] = json!("reopen");
    v["object_attributes"]["state"] = json!("opened");
    let e = parse("Merge Request Hook", &v);
    assert_eq!(*pr_of(&e).2, PrAction::Reopened);
    assert!(pr_of(&e).3.open);
    v["object_attributes"]["action"] = json!("approved");
    assert_eq!(
        *pr_of(&parse("Merge Request Hook", &v)).2,
        PrAction::Other("approved".into())
    );
}

fn labels(titles: &[&str]) -> Value {
    Value::Array(
        titles
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"id": i, "title": t, "color": "#fff", "type": "ProjectLabel"}))
            .collect(),
    )
}

fn relabelled(before: &[&str], after: &[&str]) -> PrAction {
    let mut v = fixture("merge_request.update.json");
    let attrs = v["object_attributes"].as_object_mut().expect("attrs");
    attrs.remove("oldrev");
    attrs.insert("labels".into(), labels(after));
    v["labels"] = labels(after);
    v["changes"]["labels"] = json!({"previous": labels(before), "current": labels(after)});
    let e = parse("Merge Request Hook", &v);
    let (_, _, action, pr) = pr_of(&e);
    let expected: Vec<String> = after.iter().map(|s| s.to_string()).collect();
    assert_eq!(pr.labels, expected);
    action.clone()
}

#[test]
fn a_label_edit_says_which_labels_came_and_went() {
    assert_eq!(
        relabelled(&["bug"], &["bug", "preview"]),
        PrAction::Labeled("preview".into())
    );
    assert_eq!(
        relabelled(&["preview", "bug"], &["bug"]),
        PrAction::Unlabeled("preview".into())
    );
    assert_eq!(
        relabelled(&["bug"], &["preview", "ui"]),
        PrAction::LabelsChanged {
            added: vec!["preview".into(), "ui".into()],
            removed: vec!["bug".into()],
        }
    );
    // Reordered only: nothing came or went.
    assert_eq!(
        relabelled(&["a", "b"], &["b", "a"]),
        PrAction::Other("update".into())
    );
}

#[test]
fn a_fork_merge_request_names_the_source_project() {
    let mut v = fixture("merge_request.open.json");
    v["object_attributes"]["source_project_id"] = json!(99);
    v["object_attributes"]["source"]["path_with_namespace"] = json!("someone/sub/gitlab-test");
    let e = parse("Merge Request Hook", &v);
    let (repo, _, _, pr) = pr_of(&e);
    assert_eq!(repo.full_name(), "gitlabhq/gitlab-test");
    assert!(pr.fork);
    assert_eq!(
        pr.head_repo.as_ref().map(Repo::full_name).as_deref(),
        Some("someone/sub/gitlab-test")
    );
    // The fork's project deleted: no source left.
    v["object_attributes"]
        .as_object_mut()
        .expect("attrs")
        .remove("source");
    let e = parse("Merge Request Hook", &v);
    assert_eq!(pr_of(&e).3.head_repo, None);
}

#[test]
fn pushes_move_delete_or_tag_a_ref() {
    let e = raw("Push Hook", "push.branch.json");
    let ForgeEvent::Push {
        repo,
        sender,
        git_ref,
        after,
        deleted,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(repo.full_name(), "mike/diaspora");
    assert_eq!((sender.login.as_str(), sender.id), ("jsmith", Some(4)));
    assert_eq!(git_ref, "refs/heads/master");
    assert_eq!(
        after.as_ref().map(|s| s.as_str()),
        Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
    );
    assert!(!deleted);

    let mut v = fixture("push.branch.json");
    v["after"] = json!("0000000000000000000000000000000000000000");
    v["checkout_sha"] = Value::Null;
    v["commits"] = json!([]);
    let e = parse("Push Hook", &v);
    assert!(
        matches!(
            &e,
            ForgeEvent::Push {
                after: None,
                deleted: true,
                ..
            }
        ),
        "{e:?}"
    );

    let mut v = fixture("push.branch.json");
    v["object_kind"] = json!("tag_push");
    v["ref"] = json!("refs/tags/v1.0.0");
    let e = parse("Tag Push Hook", &v);
    assert!(
        matches!(&e, ForgeEvent::Push { git_ref, .. } if git_ref == "refs/tags/v1.0.0"),
        "{e:?}"
    );
}

#[test]
fn a_note_on_a_merge_request_is_a_comment_on_it() {
    let e = raw("Note Hook", "note.merge_request.json");
    let ForgeEvent::Comment {
        repo,
        author,
        action,
        number,
        on_pull_request,
        comment_id,
        body,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(repo.full_name(), "gitlab-org/gitlab-test");
    assert_eq!((author.login.as_str(), author.id), ("root", Some(1)));
    assert_eq!(*action, CommentAction::Created);
    // The MR's iid, not its global id (7) nor the note's noteable_id.
    assert_eq!(*number, 1);
    assert!(on_pull_request);
    assert_eq!(*comment_id, 1244);
    assert_eq!(body, "This MR needs work.");

    let mut v = fixture("note.merge_request.json");
    v["object_attributes"]["action"] = json!("update");
    assert!(matches!(
        parse("Note Hook", &v),
        ForgeEvent::Comment {
            action: CommentAction::Edited,
            ..
        }
    ));
    v["object_attributes"]["system"] = json!(true);
    assert!(matches!(
        parse("Note Hook", &v),
        ForgeEvent::Comment {
            action: CommentAction::Other(_),
            ..
        }
    ));
    let mut v = fixture("note.merge_request.json");
    v["user"]["username"] = json!("project_42_bot_0f3a9c");
    assert!(matches!(
        parse("Note Hook", &v),
        ForgeEvent::Comment { author, .. } if author.is_bot
    ));
}

#[test]
fn notes_elsewhere_are_issues_or_unsupported() {
    let mut v = fixture("note.merge_request.json");
    v["object_attributes"]["noteable_type"] = json!("Issue");
    v.as_object_mut().expect("obj").remove("merge_request");
    v["issue"] = json!({"id": 92, "iid": 17, "title": "t"});
    assert!(matches!(
        parse("Note Hook", &v),
        ForgeEvent::Comment {
            number: 17,
            on_pull_request: false,
            ..
        }
    ));
    v["object_attributes"]["noteable_type"] = json!("Commit");
    assert!(matches!(
        parse("Note Hook", &v),
        ForgeEvent::Unsupported { .. }
    ));
    let e = parse(
        "Confidential Note Hook",
        &fixture("note.merge_request.json"),
    );
    assert_eq!(
        e,
        ForgeEvent::Unsupported {
            event: "Confidential Note Hook".into()
        }
    );
}

#[test]
fn bodies_of_the_wrong_shape_are_errors_not_panics() {
    for (event, body) in [
        ("Merge Request Hook", &b"not json"[..]),
        ("Merge Request Hook", b"{}"),
        ("Push Hook", br#"{"ref":"refs/heads/x","after":"zz","user_username":"u","project":{"path_with_namespace":"a/b"}}"#),
        ("Push Hook", br#"{"ref":"refs/heads/x","after":"0000","user_username":"u","project":{"path_with_namespace":"a"}}"#),
        ("Note Hook", br#"{"user":{"username":"u"},"project":{"path_with_namespace":"a/b"},"object_attributes":{"id":1,"noteable_type":"MergeRequest"}}"#),
        ("Pipeline Hook", b"[1,"),
        ("Push Hook", b"\xff\xfe"),
    ] {
        assert!(parse_event(event, body).is_err(), "{event}: {body:?}");
    }
    assert!(matches!(
        parse_event("Pipeline Hook", b"{}"),
        Ok(ForgeEvent::Unsupported { .. })
    ));
}

#[test]
fn bot_usernames_are_those_of_access_tokens() {
    for bot in [
        "project_12_bot",
        "project_12_bot_9f8e",
        "group_3_bot_ab12",
        "ghost",
    ] {
        assert!(is_bot_username(bot), "{bot}");
    }
    for human in [
        "project_bot",
        "projectx_1_bot",
        "group_1_botany",
        "alice",
        "project_1_bot_",
    ] {
        assert!(!is_bot_username(human), "{human}");
    }
}
