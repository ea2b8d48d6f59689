//! Build secrets on the real engine: `RUN --mount=type=secret` gets the operator's value for
//! the repository through previewd's BuildKit session, and the value is in neither the image
//! (history, layers) nor the build log; an id the operator did not configure, and any secret
//! for a fork's pull request, fail the build naming the id before anything is built.

mod engine_support;

use engine_support::{GitRepo, TestEnv};
use previewd::preview::manager::UpRequest;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "tok-5f0c9e1ab7d2";

fn repo_with(dockerfile: &str) -> GitRepo {
    let repo = GitRepo::from_fixture("build-fail");
    repo.write("Dockerfile", dockerfile);
    repo.write(
        ".previewd.yml",
        "services:\n  web:\n    build: .\n    port: 8080\n",
    );
    repo.commit("secrets");
    repo
}

const HTTPD: &str =
    "RUN echo ok > /index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/\"]\n";

/// A request keyed as GitHub's `acme/shop`, branch `branch` (`owner/name:branch`: a fork's).
fn request(env: &TestEnv, repo: &GitRepo, branch: &str) -> UpRequest {
    UpRequest {
        forge: "github".into(),
        key_repo: Some("acme/shop".into()),
        key_branch: Some(branch.to_owned()),
        ..env.request(repo.path())
    }
}

fn docker(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_mount_gets_the_operators_value_and_leaves_no_trace() {
    let secrets = format!("{{ \"github:acme/shop\" = {{ token = \"{SECRET}\" }} }}");
    let env = TestEnv::with("bksecret", &[("PREVIEWD_BUILD_SECRETS", &secrets)]).await;
    // A step of its own in each run: BuildKit's cache would skip a step seen before.
    let run: String = nanoid::nanoid!(8, &previewd::ids::PREVIEW_ID_ALPHABET);
    let dockerfile = format!(
        "FROM busybox\n\
         RUN --mount=type=secret,id=token cat /run/secrets/token | sha256sum > /out \
         && echo \"printed {run}: $(cat /run/secrets/token)\"\n{HTTPD}"
    );
    let repo = repo_with(&dockerfile);
    let (r, log) = env
        .up_logged(request(&env, &repo, "main"), CancellationToken::new())
        .await;
    let deployed = r.unwrap_or_else(|f| panic!("{f}: {:?}", f.log_tail));
    let id = deployed.state.id.to_string();
    let want = format!("{}  -\n", hex::encode(sha2::Sha256::digest(SECRET)));
    assert_eq!(env.get(&id, "/out").await, (200, want));
    // The step printed it; the log shows it masked.
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("printed {run}: ********"))),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.contains(SECRET)), "{log:?}");
    assert_eq!(env.get(&id, "/run/secrets/token").await.0, 404);

    let instance = env.config.instance.to_string();
    let filter = format!("label=dev.previewd.instance={instance}");
    let images = String::from_utf8(docker(&["images", "-q", "--filter", &filter])).unwrap();
    let image = images.lines().next().expect("the built image");
    let history = docker(&["history", "--no-trunc", image]);
    let saved = docker(&["save", image]);
    for (what, bytes) in [("history", &history), ("layers", &saved)] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in the image's {what}"
        );
    }
    assert!(
        String::from_utf8_lossy(&history).contains("cat /run/secrets/token | sha256sum"),
        "the history shows the step (so the search above looked at it)"
    );

    // An id the operator did not give this repository: refused before building, by name.
    let other = repo_with(&format!(
        "FROM busybox\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n{HTTPD}"
    ));
    let (r, log) = env
        .up_logged(request(&env, &other, "npmrc"), CancellationToken::new())
        .await;
    let failure = r.expect_err("an unconfigured secret");
    assert!(
        failure.reason.contains("`npmrc`") && failure.reason.contains("github:acme/shop"),
        "{}",
        failure.reason
    );
    assert!(
        !log.iter().any(|l| l == "building with BuildKit"),
        "{log:?}"
    );

    // A fork's pull request gets none, not even the configured one.
    let (r, _) = env
        .up_logged(
            request(&env, &repo, "evil/shop:patch-1"),
            CancellationToken::new(),
        )
        .await;
    let failure = r.expect_err("a fork");
    assert!(
        failure.reason.contains("`token`") && failure.reason.contains("fork"),
        "{}",
        failure.reason
    );
}
