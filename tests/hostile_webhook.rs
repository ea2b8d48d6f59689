//! Hostile webhook input through the real router (a real socket, bodies signed in the test):
//! branch and repository names with shell metacharacters, `..`, unicode, 255 characters and
//! characters Docker or DNS refuse; payloads with fields missing or of the wrong type. The
//! answer is 202, 200 or 400, never a 5xx or a panic; a name never becomes a path outside the
//! data dir or an invalid Docker name. The real engine's side is `hostile_names_engine.rs`.

mod support;

use std::path::{Component, Path};

use previewd::config::Triggers;
use previewd::forge::Repo;
use previewd::forge::github::payload::parse_event;
use previewd::ids::{Instance, PreviewId, ServiceName};
use previewd::intent::{Decision, Policy};
use previewd::preview::{labels, source};
use serde_json::{Value, json};
use support::engine::{Call, FakeEngine};
use support::{Harness, eventually, payload_json};

/// Branch names git accepts but a shell, a path or Docker would not.
pub fn hostile_branches() -> Vec<String> {
    vec![
        "team/phase-$(touch${IFS}/tmp/previewd-pwned)".into(),
        "team/phase-`id`;rm${IFS}-rf${IFS}~|cat&&x".into(),
        "team/phase-ünïcødé-🚀-分支".into(),
        "team/phase-UPPER_case.with.dots".into(),
        "team/phase-'quote\"double".into(),
        "-rf".into(),
        "team/phase-".to_owned() + &"a".repeat(244),
        "team/phase-%2e%2e%2f%2e%2e".into(),
        "team/phase-<script>alert(1)</script>".into(),
    ]
}

/// Branch names git itself refuses (`..`, control characters, `//`, `.lock`, ...).
pub fn invalid_branches() -> Vec<String> {
    vec![
        "../../../../etc/passwd".into(),
        "team/phase-..".into(),
        "team/phase-a\nb".into(),
        "team/phase-\u{0}".into(),
        "team/phase- space".into(),
        "team/phase-x.lock".into(),
        "/abs/olute".into(),
        "team//phase-x".into(),
        "team/phase-@{-1}".into(),
        "team/phase-a:b".into(),
        "team/phase-a*".into(),
        "".into(),
    ]
}

fn is_docker_name(s: &str) -> bool {
    // Docker's container and network names: [a-zA-Z0-9][a-zA-Z0-9_.-]+
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Every hostile name reaching the labelled-PR path is queued under exactly that name, with a
/// validated repository, and the server answers only 202/200; hostile repository names are 400.
#[tokio::test]
async fn hostile_branch_names_are_queued_verbatim_and_repository_names_refused() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let branches: Vec<String> = hostile_branches()
        .into_iter()
        .chain(invalid_branches())
        .collect();
    for (i, branch) in branches.iter().enumerate() {
        let mut p = payload_json("pull_request.labeled.json");
        p["number"] = json!(1000 + i);
        p["pull_request"]["number"] = json!(1000 + i);
        p["pull_request"]["head"]["ref"] = json!(branch);
        h.github.set_pull(p["pull_request"].clone());
        h.github
            .set_permission(p["sender"]["login"].as_str().unwrap(), "write");
        let (status, body) = h
            .post("pull_request", &serde_json::to_vec(&p).unwrap())
            .await;
        assert_eq!(status, 202, "{branch:?}: {body}");
    }
    // The fake engine saw each branch under its exact name (nothing trimmed, nothing run).
    eventually("every hostile branch deployed", || {
        let deployed: Vec<String> = h
            .engine
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Deployed { key, .. } => Some(key.branch),
                _ => None,
            })
            .collect();
        branches.iter().all(|b| deployed.contains(b))
    })
    .await;
    for c in h.engine.calls() {
        if let Call::Deploy { key, .. } = c {
            assert_eq!(key.repo, "Codertocat/Hello-World");
        }
    }
    assert!(!Path::new("/tmp/previewd-pwned").exists(), "a command ran");

    // Pushes: a hostile branch either matches triggers.branches verbatim or is ignored.
    for branch in hostile_branches().iter().chain(invalid_branches().iter()) {
        let mut p = payload_json("push.branch.json");
        p["ref"] = json!(format!("refs/heads/{branch}"));
        let (status, body) = h.post("push", &serde_json::to_vec(&p).unwrap()).await;
        assert!(
            status == 202 || status == 200,
            "{branch:?}: {status} {body}"
        );
    }

    // Repository names outside GitHub's alphabet never become a key, a URL or a path: 400.
    let long = format!("o/{}", "r".repeat(255));
    for repo in [
        "../../etc/passwd",
        "o/r;rm -rf /",
        "o/r/../../x",
        "o/$(id)",
        "o/..",
        "./r",
        "o/ünï",
        "o/r\u{0}",
        "o/r\nx",
        "no-slash",
        long.as_str(),
    ] {
        for (event, fixture) in [
            ("pull_request", "pull_request.labeled.json"),
            ("push", "push.branch.json"),
            ("issue_comment", "issue_comment.created.json"),
        ] {
            let mut p = payload_json(fixture);
            p["repository"]["full_name"] = json!(repo);
            let (status, body) = h.post(event, &serde_json::to_vec(&p).unwrap()).await;
            assert_eq!(status, 400, "{event} {repo:?}: {body}");
            assert!(body["error"].as_str().unwrap().contains("owner/name"));
        }
        // ... also as the PR's head repository (where the clone URL comes from).
        let mut p = payload_json("pull_request.labeled.json");
        p["pull_request"]["head"]["repo"]["full_name"] = json!(repo);
        let (status, _) = h
            .post("pull_request", &serde_json::to_vec(&p).unwrap())
            .await;
        assert_eq!(status, 400, "head repo {repo:?}");
    }
    let (status, _) = h.get(h.addr, "/healthz").await;
    assert_eq!(status, 200);
    h.stop().await;
}

/// The naming functions, fed what a hostile event could carry: paths stay under the data
/// dir, names are valid Docker names and DNS labels, and hostile ids, services and
/// repositories never parse.
#[test]
fn names_and_paths_built_from_hostile_input_stay_valid_and_inside_the_data_dir() {
    let instance_dir = Path::new("/srv/previewd/data/previewd");
    let inst = Instance::parse("previewd").unwrap();
    let id = PreviewId::generate();
    let service = ServiceName::parse("web").unwrap();
    let mut names: Vec<String> = hostile_branches();
    names.extend(invalid_branches());
    names.extend(
        [
            "file:///../../etc",
            "https://github.com/../../../../root/.ssh.git",
            "/etc/passwd",
            "..",
            "../x",
        ]
        .map(String::from),
    );
    for name in &names {
        let url = format!("https://github.com/{name}.git");
        for dir in [
            source::clone_dir(instance_dir, name),
            source::clone_dir(instance_dir, &url),
        ] {
            let rel = dir.strip_prefix(instance_dir.join("repos")).unwrap();
            assert!(
                rel.components().count() == 1
                    && matches!(rel.components().next(), Some(Component::Normal(_))),
                "{name:?} -> {}",
                dir.display()
            );
            let file = rel.to_str().unwrap();
            assert!(file.ends_with(".git") && file.len() == 16 + 4, "{file}");
        }
        assert!(PreviewId::parse(name).is_err(), "{name:?} is an id");
        assert!(ServiceName::parse(name).is_err(), "{name:?} is a service");
        assert!(Instance::parse(name).is_err(), "{name:?} is an instance");
        if name.contains(['$', '`', ';', ' ', '\n', '\0', '\'', '<']) || name.starts_with('.') {
            assert!(Repo::parse(name).is_none(), "{name:?} is a repository");
        }
    }
    let wt = source::worktree_dir(instance_dir, &id);
    assert_eq!(wt.parent(), Some(instance_dir.join("worktrees").as_path()));
    for n in [
        labels::gateway_name(&inst),
        labels::container_name(&inst, &id, service.as_str()),
        labels::staging_name(&inst, &id, service.as_str(), u64::MAX),
        labels::network_name(&inst, &id, u64::MAX),
        labels::upstream_alias(&id, service.as_str(), u64::MAX),
    ] {
        assert!(is_docker_name(&n), "{n}");
    }
    // The longest service name still makes a DNS label of the alias's parts and a Docker name.
    let longest = ServiceName::parse(&"s".repeat(63)).unwrap();
    assert!(is_docker_name(&labels::container_name(
        &inst,
        &id,
        longest.as_str()
    )));
    assert!(is_dns_label(id.as_str()));
    let tag = labels::image_tag(&inst, &id, service.as_str(), &"f".repeat(64));
    let (repo, t) = tag.split_once(':').unwrap();
    assert!(
        is_docker_name(repo) && repo == repo.to_ascii_lowercase(),
        "{tag}"
    );
    assert_eq!(t.len(), 64);
}

/// Collects the JSON paths of every value in `v`.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                out.push(at.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(2) {
                at.push(i.to_string());
                out.push(at.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn edit(v: &mut Value, path: &[String], new: Option<&Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = v;
    for p in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(p).unwrap(),
            Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    match (cur, new) {
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Object(m), Some(n)) => {
            m.insert(last.clone(), n.clone());
        }
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        (Value::Array(a), Some(n)) => a[last.parse::<usize>().unwrap()] = n.clone(),
        _ => unreachable!(),
    }
}

const FIXTURES: [(&str, &str); 3] = [
    ("pull_request", "pull_request.labeled.json"),
    ("push", "push.branch.json"),
    ("issue_comment", "issue_comment.created.json"),
];

/// Every field of every real payload removed, nulled or given each wrong type: the parser and
/// the policy answer `Err` or a decision, never a panic. The fields previewd reads are an
/// error when missing or mistyped.
#[test]
fn every_field_missing_or_mistyped_is_an_error_or_ignored_never_a_panic() {
    let t = Triggers {
        labels: vec!["bug".into(), "preview".into()],
        branches: vec!["*-patch-*".into()],
        command: "/preview".into(),
        allow_forks: false,
    };
    let policy = Policy::new(&t, previewd::forge::ForgeKind::GitHub, "https://github.com").unwrap();
    let wrong = [
        None,
        Some(Value::Null),
        Some(json!(-1)),
        Some(json!("x")),
        Some(json!({})),
    ];
    let mut tried = 0;
    for (event, fixture) in FIXTURES {
        let base = payload_json(fixture);
        let mut all = Vec::new();
        paths(&base, &mut Vec::new(), &mut all);
        for path in &all {
            for w in &wrong {
                let mut v = base.clone();
                edit(&mut v, path, w.as_ref());
                let body = serde_json::to_vec(&v).unwrap();
                if let Ok(e) = parse_event(event, &body) {
                    let _ = policy.decide(&e);
                }
                tried += 1;
            }
        }
        // The fields previewd reads: missing, null or a wrong type is an error (a 400).
        let required: &[&str] = match event {
            "pull_request" => &[
                "action",
                "pull_request",
                "pull_request.number",
                "pull_request.state",
                "pull_request.head",
                "pull_request.head.ref",
                "pull_request.head.sha",
                "pull_request.base",
                "repository",
                "repository.full_name",
                "sender",
                "sender.login",
            ],
            "push" => &[
                "ref",
                "after",
                "repository",
                "repository.full_name",
                "sender",
                "sender.login",
            ],
            _ => &[
                "action",
                "issue",
                "issue.number",
                "comment",
                "comment.id",
                "comment.user",
                "comment.user.login",
                "repository",
                "repository.full_name",
            ],
        };
        for field in required {
            let path: Vec<String> = field.split('.').map(String::from).collect();
            // (serde reads a struct from an array of its fields, so `[..]` is not "wrong" for
            // an object: only scalars are tried here.)
            for w in [None, Some(Value::Null), Some(json!(false))] {
                let mut v = base.clone();
                edit(&mut v, &path, w.as_ref());
                let body = serde_json::to_vec(&v).unwrap();
                assert!(
                    parse_event(event, &body).is_err(),
                    "{fixture}: {field} = {w:?} accepted"
                );
            }
        }
    }
    assert!(tried > 2000, "only {tried} variants");
    // Truncations of a real body at every length are refused, not a panic.
    let body = serde_json::to_vec(&payload_json("pull_request.labeled.json")).unwrap();
    for n in (0..body.len()).step_by(7) {
        assert!(parse_event("pull_request", &body[..n]).is_err());
    }
    // Invalid UTF-8 is refused wherever it is, in a field previewd skips too, and the answer
    // says where (the body is checked once, whole, before it is parsed).
    let mut body = serde_json::to_vec(&payload_json("pull_request.labeled.json")).unwrap();
    let at = body
        .windows(7)
        .position(|w| w == b"\"body\":")
        .expect("the fixture has a body");
    body.splice(at + 8..at + 8, [0xff, 0xfe]);
    let err = parse_event("pull_request", &body).expect_err("invalid UTF-8 accepted");
    assert!(
        err.to_string()
            .contains(&format!("not UTF-8 at byte {}", at + 8)),
        "{err}"
    );
    // Numbers past u64 and negative PR numbers are a 400 too.
    for n in [json!(-1), json!(u64::MAX as f64 * 2.0), json!("7")] {
        let mut v = payload_json("pull_request.labeled.json");
        v["pull_request"]["number"] = n.clone();
        let body = serde_json::to_vec(&v).unwrap();
        assert!(parse_event("pull_request", &body).is_err(), "{n}");
    }
    assert!(matches!(
        policy.decide(&previewd::forge::ForgeEvent::Ping),
        Decision::Ping
    ));
}

/// The same mutations through the real router: missing or wrong-typed fields are 400 with a
/// reason, nothing reaches the engine or the forge, and the server keeps answering.
#[tokio::test]
async fn missing_or_mistyped_fields_through_the_router_are_400_and_nothing_runs() {
    let h = Harness::start(FakeEngine::auto(), &[]).await;
    let cases: &[(&str, &str, &str, Option<Value>)] = &[
        ("pull_request", "pull_request.labeled.json", "action", None),
        (
            "pull_request",
            "pull_request.labeled.json",
            "action",
            Some(json!(7)),
        ),
        ("pull_request", "pull_request.labeled.json", "label", None),
        (
            "pull_request",
            "pull_request.labeled.json",
            "label",
            Some(json!("bug")),
        ),
        (
            "pull_request",
            "pull_request.labeled.json",
            "pull_request.number",
            Some(json!("1")),
        ),
        (
            "pull_request",
            "pull_request.labeled.json",
            "pull_request.head.ref",
            Some(json!(null)),
        ),
        (
            "pull_request",
            "pull_request.labeled.json",
            "pull_request.head.sha",
            Some(json!(["x"])),
        ),
        (
            "pull_request",
            "pull_request.labeled.json",
            "pull_request.labels",
            Some(json!("bug")),
        ),
        (
            "pull_request",
            "pull_request.labeled.json",
            "pull_request.merged",
            Some(json!("yes")),
        ),
        (
            "pull_request",
            "pull_request.labeled.json",
            "repository.full_name",
            Some(json!({})),
        ),
        ("pull_request", "pull_request.labeled.json", "sender", None),
        ("push", "push.branch.json", "ref", None),
        ("push", "push.branch.json", "after", Some(json!(0))),
        ("push", "push.branch.json", "deleted", Some(json!("false"))),
        ("push", "push.branch.json", "repository", Some(json!([]))),
        (
            "issue_comment",
            "issue_comment.created.json",
            "comment.id",
            Some(json!(-3)),
        ),
        (
            "issue_comment",
            "issue_comment.created.json",
            "comment.body",
            Some(json!(1)),
        ),
        (
            "issue_comment",
            "issue_comment.created.json",
            "comment.user",
            None,
        ),
        (
            "issue_comment",
            "issue_comment.created.json",
            "issue.number",
            Some(json!(1.5)),
        ),
    ];
    for (event, fixture, field, value) in cases {
        let mut v = payload_json(fixture);
        let path: Vec<String> = field.split('.').map(String::from).collect();
        edit(&mut v, &path, value.as_ref());
        let (status, body) = h.post(event, &serde_json::to_vec(&v).unwrap()).await;
        assert_eq!(status, 400, "{fixture} {field}={value:?}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    // Bodies that are not JSON objects at all, for every event previewd reads.
    for event in ["pull_request", "push", "issue_comment", "ping", "release"] {
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"\xff\xfe",
            b"{\"a\":",
            b"1e999999",
            &[b'['; 10_000],
        ] {
            let (status, _) = h.post(event, body).await;
            // Unused events are read as any JSON value, then ignored (200).
            let json = serde_json::from_slice::<Value>(body).is_ok();
            let want = if event == "release" && json { 200 } else { 400 };
            assert_eq!(
                status,
                want,
                "{event} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(20)])
            );
        }
    }
    // Hostile header values: long, non-ASCII, odd event names; answered, never a 5xx.
    let body = serde_json::to_vec(&payload_json("ping.json")).unwrap();
    let sig = support::sign(support::SECRET, &body);
    let long = "e".repeat(10_000);
    for event in ["../../etc", long.as_str(), "PULL_REQUEST", "pull_request "] {
        let (status, _) = h
            .post_raw(
                &[
                    ("x-github-event", event),
                    ("x-github-delivery", &h.delivery_id()),
                    ("x-hub-signature-256", &sig),
                ],
                &body,
            )
            .await;
        assert!(status == 200 || status == 400, "{event:.20}: {status}");
    }
    h.assert_nothing_queued(4).await;
    let (status, _) = h.get(h.addr, "/healthz").await;
    assert_eq!(status, 200);
    h.stop().await;
}
