//! The classic builder, as the fallback on a Docker engine without BuildKit. The engine here
//! has BuildKit, so previewd talks to it through a proxy this test owns that answers a BuildKit
//! build (`POST /build?version=2`) as such an engine does, with a refusal, and forwards every
//! other request to the real daemon: the classic builds below are real. One binary of its own:
//! `DOCKER_HOST` is process-wide.

mod engine_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

use engine_support::{GitRepo, TestEnv};

const DOCKER_SOCK: &str = "/var/run/docker.sock";

/// Serves the proxy on `path`; counts the BuildKit builds it refused.
fn refusing_proxy(path: &Path) -> Arc<AtomicUsize> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("bind proxy socket");
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let count = count.clone();
        async move { forward(req, &count).await }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    refused
}

async fn forward(req: Request<Body>, refused: &AtomicUsize) -> Response<Body> {
    let buildkit = req.uri().path().ends_with("/build")
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "version=2"));
    if buildkit {
        refused.fetch_add(1, Ordering::SeqCst);
        return answer(
            StatusCode::BAD_REQUEST,
            r#"{"message":"buildkit not supported by daemon"}"#,
        );
    }
    let Ok(stream) = UnixStream::connect(DOCKER_SOCK).await else {
        return answer(StatusCode::BAD_GATEWAY, "{}");
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return answer(StatusCode::BAD_GATEWAY, "{}");
    };
    tokio::spawn(conn);
    match sender.send_request(req).await {
        Ok(response) => response.map(Body::new),
        Err(_) => answer(StatusCode::BAD_GATEWAY, "{}"),
    }
}

fn answer(status: StatusCode, json: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(json));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// ` ---> 3f2a9c1d0b7e` after each step of a build log: the image it committed (or the base).
fn step_images(log: &[String]) -> Vec<String> {
    log.iter()
        .filter_map(|l| l.trim().strip_prefix("---> "))
        .filter(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect()
}

/// The step images of `ids` that exist untagged.
async fn untagged(ids: &[String]) -> Vec<String> {
    let docker = bollard::Docker::connect_with_defaults().expect("docker");
    let mut left = Vec::new();
    for id in ids {
        if let Ok(image) = docker.inspect_image(id).await
            && image.repo_tags.unwrap_or_default().is_empty()
        {
            left.push(id.clone());
        }
    }
    left
}

/// Docker's classic builder commits an image per step; a build that fails after some steps
/// leaves them untagged. They carry the instance label from the first step on, so the failed
/// deployment's cleanup prunes them, but never while another build of the instance runs (its
/// newest step is untagged too): a build elsewhere holds `builds.lock` shared. What was left
/// then goes with the next reconcile pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_buildkit_the_classic_builder_runs_and_a_failed_build_leaves_none_of_its_step_images()
 {
    let socket = tempfile::tempdir().expect("tempdir");
    let sock = socket.path().join("docker.sock");
    let refused = refusing_proxy(&sock);
    // SAFETY: set before anything else in this one-test binary reads the environment.
    unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", sock.display())) };
    let env = TestEnv::new("fsteps").await;
    let repo = GitRepo::from_fixture("build-fail");
    repo.write(
        "Dockerfile",
        "FROM busybox\nCOPY .previewd.yml /app/\nENV STEP=two\nRUN echo \"error: step three\" >&2 && exit 3\n",
    );
    repo.commit("fail after two committed steps");

    // Another process of the instance is building.
    let dir = env.config.instance_dir();
    std::fs::create_dir_all(&dir).expect("instance dir");
    let other = std::fs::File::create(dir.join("builds.lock")).expect("lock file");
    other.lock_shared().expect("shared lock");
    let f = env
        .up_req(env.request(repo.path()))
        .await
        .expect_err("must fail");
    assert_eq!(f.phase.as_str(), "build");
    assert!(
        refused.load(Ordering::SeqCst) >= 1,
        "BuildKit was not asked first"
    );
    assert!(
        f.log_tail
            .iter()
            .any(|l| l.contains("does not build with BuildKit (buildkit not supported by daemon): building with the classic builder")),
        "{:?}",
        f.log_tail
    );
    let first = step_images(&f.log_tail);
    assert!(first.len() >= 3, "base and two steps: {:?}", f.log_tail);
    assert!(
        untagged(&first).await.len() >= 2,
        "pruned while another build ran: {:?}",
        f.log_tail
    );
    drop(other);

    // A reconcile pass (`gc`, serve's periodic pass) finds and removes them now.
    let report = env.clean_up_now().await;
    let pruned = report.images.iter().filter(|i| i.ends_with(" (untagged)"));
    assert!(pruned.count() >= 1, "{:?}", report.images);
    let left = untagged(&first).await;
    assert!(left.is_empty(), "left after reconcile: {left:?}");

    // And a failed attempt's own cleanup removes what it committed.
    let f = fails(&env, env.request(repo.path())).await;
    let second = step_images(&f.log_tail);
    let left = untagged(&[first, second].concat()).await;
    assert!(
        left.is_empty(),
        "untagged step images left behind: {left:?}"
    );
}

async fn fails(
    env: &TestEnv,
    req: previewd::preview::manager::UpRequest,
) -> previewd::engine::DeployFailure {
    let f = env.up_req(req).await.expect_err("must fail");
    env.assert_clean().await;
    f
}
