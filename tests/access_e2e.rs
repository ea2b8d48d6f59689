//! Access to previews end to end, as a team meets it: a real `serve` (its edge on the socket
//! the gateway dials), the real Caddy gateway and real Docker, the fake GitHub recording the
//! sticky comment. The operator leaves `[access]` unset (the default: every preview public);
//! the repository's `.previewd.yml` tightens its previews to `password`. The preview is
//! labelled with that mode, the gateway asks previewd about it (and only about it), the
//! sticky comment shows the password that opens it, no log line carries the password, and
//! request bodies (a form POST, binary uploads of 256 KiB, 1 MiB and 8 MiB, each checked by
//! its SHA-256) reach the preview intact through the check.

mod e2e_support;
mod engine_support;
mod support;

use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use e2e_support::{DEADLINE, E2e};
use engine_support::eventually;
use http_body_util::{BodyExt, Full};
use sha2::Digest;

/// Captures every log line of the process (this test binary's only subscriber).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn start() -> Logs {
        let logs = Logs::default();
        let w = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || w.clone())
            .try_init();
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A request through the gateway to `host`: status, headers, body.
async fn call(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, axum::http::HeaderMap, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// `len` bytes of every value, from a fixed xorshift: a binary upload the same in every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn basic(password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("preview:{password}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_tightens_public_to_password_and_the_comment_shows_it() {
    let logs = Logs::start();
    let e = E2e::start("acc-e2e", "access-echo", "changes").await;
    let yml = "access: password\nservices:\n  web:\n    build: .\n    port: 8080\n    \
               route: /\n    healthcheck: {path: /}\n";
    e.repo.write(".previewd.yml", yml);
    let sha = e
        .repo
        .commit("previews of this repository need the password");
    e.pr("labeled", &sha, "Codertocat", "write").await;
    let ok = e.status(&sha, "success").await;
    let url = ok["target_url"].as_str().expect("target_url").to_owned();
    let host = url.trim_start_matches("http://").to_owned();
    let id = host.split('.').next().expect("id").to_owned();

    // The sticky comment: who may see it, and the password.
    let comment = eventually(DEADLINE, "the sticky comment says ready", || {
        let c = e.comments();
        async move {
            c.into_iter()
                .map(|c| c.body)
                .find(|b| b.contains("Preview ready"))
        }
    })
    .await;
    let line = comment
        .lines()
        .find(|l| l.starts_with("**Access:** password"))
        .unwrap_or_else(|| panic!("no access line: {comment}"));
    let password = line
        .split('`')
        .nth(3)
        .unwrap_or_else(|| panic!("no password in {line}"))
        .to_owned();
    assert!(line.contains("user `preview`"), "{line}");
    assert!(password.len() >= 20, "{line}");

    // The label is the state: the mode survives in Docker, nowhere else.
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let info = docker
        .inspect_container(
            &format!("{}-{id}-web", e.env.config.instance),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .expect("inspect");
    let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(
        labels.get("dev.previewd.access").map(String::as_str),
        Some("password")
    );

    // The gateway asks previewd: no password, a prompt; the wrong one, a prompt; the one the
    // comment shows, the preview. Every answer says noindex.
    let port = e.env.port;
    let (status, headers, body) = call(port, "GET", &host, "/", &[], Vec::new()).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic "),
        "{headers:?}"
    );
    assert_eq!(headers["x-robots-tag"], "noindex, nofollow");
    assert!(!body.contains("the preview itself"), "{body}");
    let wrong = basic("not-the-password");
    let (status, _, _) = call(
        port,
        "GET",
        &host,
        "/",
        &[("authorization", &wrong)],
        vec![],
    )
    .await;
    assert_eq!(status, 401);
    let auth = basic(&password);
    let (status, headers, body) =
        call(port, "GET", &host, "/", &[("authorization", &auth)], vec![]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-robots-tag"], "noindex, nofollow");
    assert!(body.contains("the preview itself"), "{body}");

    // Bodies pass the check intact: a form POST, and a larger upload.
    let form = b"name=Ada+Lovelace&note=caf%C3%A9+%26+more".to_vec();
    // A POST to the sample's body echo with the password.
    let post = |content_type: &'static str, body: Vec<u8>| {
        let (host, auth) = (host.clone(), auth.clone());
        async move {
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", content_type),
            ];
            call(port, "POST", &host, "/cgi-bin/body", &headers, body).await
        }
    };
    let (status, _, body) = post("application/x-www-form-urlencoded", form.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("method=POST")
            && body.contains("type=application/x-www-form-urlencoded")
            && body.contains(&format!("length={}", form.len())),
        "{body}"
    );
    assert!(
        body.contains("name=Ada+Lovelace&note=caf%C3%A9+%26+more"),
        "{body}"
    );
    // Larger uploads, binary: the sample's CGI answers its first line before it reads the
    // body, as streaming endpoints do, so the gateway must go on reading the upload while the
    // answer flows (beyond 256 KiB Caddy used to break the answer off mid-way).
    for size in [256 * 1024, 1024 * 1024, 8 * 1024 * 1024] {
        let big = noise(size);
        let want = hex::encode(sha2::Sha256::digest(&big));
        let (status, _, body) = post("application/octet-stream", big).await;
        assert_eq!(status, 200, "{size} bytes: {body}");
        assert!(
            body.contains(&format!("length={size}")) && body.contains(&format!("sha256={want}")),
            "the {size}-byte body arrived altered: {}",
            &body[..body.len().min(300)]
        );
    }
    // Without the password, a POST never reaches the preview.
    let (status, _, body) = call(
        port,
        "POST",
        &host,
        "/cgi-bin/body",
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("method=POST"), "{body}");

    // No log line carries the password (the deployment, the report, the checks).
    let text = logs.text();
    assert!(!text.is_empty(), "no logs captured");
    assert!(
        !text.contains(&password),
        "the password is in the logs:\n{text}"
    );

    e.close_and_wait_gone(&sha).await;
    e.stop().await;
}
