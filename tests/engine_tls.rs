//! On-demand TLS on the real Caddy gateway, with Caddy's internal CA (no ACME server here): a
//! live preview's host gets a certificate at its first handshake; a host that is no live
//! preview gets none, because the ask endpoint approves only live previews' hosts.

mod engine_support;

use std::process::Command;

use engine_support::{GitRepo, TestEnv, free_port};

/// `curl -k` with the host resolved to the gateway: (exit code, body).
fn https_get(host: &str, port: u16) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "20",
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("https://{host}:{port}/"),
        ])
        .output()
        .expect("curl (./run installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_tls_serves_live_previews_only() {
    let tls_port = free_port().to_string();
    let env = TestEnv::with(
        "tls",
        &[
            ("PREVIEWD_GATEWAY_TLS", "on_demand"),
            ("PREVIEWD_GATEWAY_TLS_ISSUER", "internal"),
            ("PREVIEWD_GATEWAY_TLS_PORT", &tls_port),
        ],
    )
    .await;
    let port: u16 = tls_port.parse().expect("port");
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    assert_eq!(
        d.state.url,
        format!("https://{}.localhost:{port}", d.state.id)
    );

    let host = format!("{}.localhost", d.state.id);
    let (code, body) = https_get(&host, port);
    assert_eq!(code, 0, "TLS to a live preview failed (curl exit {code})");
    assert!(body.contains("previewd sample: compose-only"), "{body}");

    // No certificate for a host that is no live preview: the handshake fails.
    let (code, body) = https_get("zzzzzzzzzz.localhost", port);
    assert_ne!(
        code, 0,
        "a certificate was issued for an unknown host: {body}"
    );

    // Gone preview, gone approval (the gateway itself goes with the last preview).
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_certificate_serves_every_preview() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=*.localhost",
            "-addext",
            "subjectAltName=DNS:*.localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (./run installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tls_port = free_port().to_string();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let env = TestEnv::with(
        "wild",
        &[
            ("PREVIEWD_GATEWAY_TLS", "wildcard"),
            ("PREVIEWD_GATEWAY_CERT_FILE", &cert_s),
            ("PREVIEWD_GATEWAY_KEY_FILE", &key_s),
            ("PREVIEWD_GATEWAY_TLS_PORT", &tls_port),
        ],
    )
    .await;
    let port: u16 = tls_port.parse().expect("port");
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let host = format!("{}.localhost", d.state.id);
    let (code, body) = https_get(&host, port);
    assert_eq!(
        code, 0,
        "TLS with the wildcard certificate failed (curl exit {code})"
    );
    assert!(body.contains("previewd sample: compose-only"), "{body}");
    // The certificate served is the operator's: its subject is the wildcard.
    let out = Command::new("curl")
        .args(["-skv", "--max-time", "20", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl");
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("CN=*.localhost"), "{verbose}");
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}
