//! Event → intent: arbitrary JSON bodies for each event, parsed and decided by a policy with
//! trigger labels, branch globs and forks. Never a panic; an intent's repository is always a
//! valid `owner/name`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use previewd::config::Triggers;
use previewd::forge::github::payload::parse_event;
use previewd::forge::{ForgeKind, Repo};
use previewd::intent::{Decision, Policy};

const EVENTS: [&str; 4] = ["pull_request", "push", "issue_comment", "ping"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let t = Triggers {
        labels: vec!["preview".into(), "bug".into()],
        branches: vec!["*/phase-*".into(), "**".into()],
        command: "/preview".into(),
        allow_forks: pick & 0x80 != 0,
    };
    let policy = Policy::new(&t, ForgeKind::GitHub, "https://github.com").expect("policy");
    let Ok(event) = parse_event(EVENTS[pick as usize % EVENTS.len()], body) else {
        return;
    };
    if let Decision::Act(intent) = policy.decide(&event) {
        assert!(Repo::parse(&intent.repo.full_name()).is_some());
    }
});
