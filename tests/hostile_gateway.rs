//! What a preview's own code can reach of the gateway, tried from inside a running preview
//! container: the gateway's HTTP listener (yes, as anyone with a URL: the control that the
//! network path works), but not Caddy's admin API (no TCP port 2019: it is a unix socket
//! mounted only into the gateway) nor the on-demand TLS ask endpoint (the gateway's own
//! loopback). Admin paths sent to the HTTP listener hit the catch-all 404, not the admin API.
//! And inside the gateway's own network namespace, Caddy's default admin address
//! (`localhost:2019`, where Caddy listens whenever a loaded config lacks its `admin` block)
//! has nothing listening.

mod engine_support;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use engine_support::{GitRepo, TestEnv, exec};
use previewd::preview::labels;

async fn sh(env: &TestEnv, container: &str, script: &str) -> String {
    exec(env.manager.docker(), container, &["sh", "-c", script])
        .await
        .1
}

/// Runs `script` in a busybox container that shares the gateway container's network namespace,
/// so `localhost` is the gateway's own loopback (the gateway image has no shell of its own).
/// The container carries the instance label, so the test's cleanup finds it if the test fails.
async fn sh_beside_gateway(env: &TestEnv, script: &str) -> String {
    let d = env.manager.docker();
    let gw = labels::gateway_name(&env.config.instance);
    let name = format!("{gw}-probe");
    d.create_container(
        Some(CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        }),
        ContainerCreateBody {
            image: Some("busybox".into()),
            cmd: Some(vec!["sleep".into(), "120".into()]),
            labels: Some(
                [(labels::INSTANCE.to_owned(), env.config.instance.to_string())]
                    .into_iter()
                    .collect(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{gw}")),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .expect("create the probe");
    d.start_container(&name, None)
        .await
        .expect("start the probe");
    let out = exec(d, &name, &["sh", "-c", script]).await.1;
    d.remove_container(
        &name,
        Some(RemoveContainerOptions {
            force: true,
            ..Default::default()
        }),
    )
    .await
    .expect("remove the probe");
    out
}

/// A shell loop that fetches each of `urls` (5 s each), printing `== <url>`, what came back and
/// `rc=<exit code>`.
fn fetch_each(urls: &[String]) -> String {
    format!(
        "for u in {}; do echo \"== $u\"; timeout 5 wget -q -O- \"$u\" 2>&1; echo \"rc=$?\"; done",
        urls.join(" ")
    )
}

/// What `fetch_each`'s output says for `url`.
fn answer<'a>(out: &'a str, url: &str) -> &'a str {
    out.split("== ")
        .find(|s| {
            s.strip_prefix(url)
                .is_some_and(|rest| rest.starts_with('\n'))
        })
        .unwrap_or_else(|| panic!("no answer for {url}:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_cannot_reach_the_gateway_admin_api() {
    let env = TestEnv::new("hgw").await;
    let repo = GitRepo::from_fixture("compose-only");
    let d = env.up(repo.path()).await.expect("up");
    let app = labels::container_name(&env.config.instance, &d.state.id, "app");
    let gw = labels::gateway_name(&env.config.instance);
    let control: Vec<String> = ["/", "/config/", "/load"]
        .iter()
        .map(|path| format!("http://{gw}:8080{path}"))
        .collect();
    let closed = [
        format!("http://{gw}:2019/config/"),
        format!("http://{gw}:2019/load"),
        format!("http://{gw}:2020/"),
    ];
    let out = sh(
        &env,
        &app,
        &fetch_each(&[control.clone(), closed.to_vec()].concat()),
    )
    .await;
    // The control: the gateway is on this network and answers HTTP (404 for an unknown host).
    for url in &control {
        let a = answer(&out, url);
        assert!(a.contains("404"), "{url}: {a}");
    }
    // The admin API and the TLS ask endpoint: no answer at all.
    for url in &closed {
        let a = answer(&out, url);
        assert!(!a.contains("rc=0") && !a.contains("HTTP/"), "{url}: {a}");
        assert!(
            a.contains("can't connect") || a.contains("rc=124") || a.contains("rc=143"),
            "{url}: {a}"
        );
    }
    // On the gateway's own loopback: the HTTP listener answers (the control: the probe is
    // really inside the gateway's namespace), Caddy's default admin address refuses.
    let (listener, admin_api) = (
        "http://localhost:8080/".to_owned(),
        "http://localhost:2019/config/".to_owned(),
    );
    let inside = sh_beside_gateway(&env, &fetch_each(&[listener.clone(), admin_api.clone()])).await;
    assert!(answer(&inside, &listener).contains("404"), "{inside}");
    let admin = answer(&inside, &admin_api);
    assert!(
        admin.contains("can't connect") && !admin.contains("rc=0"),
        "Caddy's admin API answers on the gateway's loopback: {admin}"
    );
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}

/// Hosts and paths are looked up as files in the gateway's route table, so a request must not
/// be able to name a file of its choice: glob characters are literal, dot segments are refused,
/// and the lookup stays inside the table. Through the real gateway, against the two-service
/// app (web at `/`, api at `/api`; the api's own 404 names the path, the web's does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_hosts_and_paths_reach_only_what_their_route_names() {
    let env = TestEnv::new("hgwpath").await;
    let repo = GitRepo::from_fixture("two-service");
    let d = env.up(repo.path()).await.expect("up");
    let id = d.state.id.to_string();
    let host = format!("{id}.localhost");
    // The control: the api answers under its route, with its own 404 for an unknown path.
    let (status, body) = env.get_host(&host, "/api/nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not found: /api/nope"), "{body}");
    // Glob characters in a path are literal: none of these is the api's.
    for path in [
        "/*/nope",
        "/a*/nope",
        "/[a]pi/nope",
        "/ap%3Fi/nope",
        "/%2A/nope",
    ] {
        let (_, body) = env.get_host(&host, path).await;
        assert!(!body.contains("api"), "{path}: {body}");
    }
    // Dot segments, plain or encoded, are refused before the lookup.
    for path in ["/api/../x", "/x/%2e%2e/api/nope", "/./api"] {
        assert_eq!(env.get_host(&host, path).await.0, 400, "{path}");
    }
    // Glob characters or dots in a host name no preview, nor does another case (unless the
    // id is all digits, which has no other case).
    let mut hosts = vec![
        "*.localhost".to_owned(),
        format!("{}*.localhost", &id[..5]),
        "..".to_owned(),
    ];
    if id.to_ascii_uppercase() != id {
        hosts.push(format!("{}.localhost", id.to_ascii_uppercase()));
    }
    for h in hosts {
        let (status, body) = env.get_host(&h, "/").await;
        assert_eq!(status, 404, "{h}: {body}");
        assert!(body.contains("no preview has the id"), "{h}: {body}");
    }
    env.manager.down(&d.state.id).await.expect("down");
    env.assert_clean().await;
}
