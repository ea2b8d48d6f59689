//! The one shared Caddy gateway of an instance. Its routes are a pure function of the
//! containers' labels, kept as a table of files that Caddy reads per request ([`routes`]);
//! [`sync`] recomputes the table from Docker, joins the gateway to the networks it must reach
//! and writes the table, so no preview's change ever reloads Caddy or drops another preview's
//! requests. Caddy's config ([`caddy_config`]) depends on the gateway's settings only. The admin
//! API listens on a unix socket in a directory shared only by previewd and the gateway: no
//! preview container can reach it. The config and the table live in that directory, so a
//! gateway that Docker restarts comes back with every route before previewd even notices.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkConnectRequest, NetworkDisconnectRequest, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions};
use serde_json::{Value, json};

use super::docker::{self, DockerError};
use super::http;
use super::labels::{self, Observed};
use crate::config::{Config, Tls};

pub mod routes;

/// Where the admin directory is mounted inside the gateway container.
const MOUNT: &str = "/run/previewd";
/// The port Caddy listens on inside the container (unprivileged: Caddy runs as our user).
const LISTEN_PORT: u16 = 8080;
/// The HTTPS port inside the container, when TLS is on.
const TLS_PORT: u16 = 8443;
/// On-demand TLS asks here before each certificate: a listener inside the gateway container
/// only, answering from the same labels as the routes, so TLS never depends on previewd being
/// up at handshake time and no preview can reach it.
const ASK_LISTEN: &str = "127.0.0.1:2020";
/// Where a wildcard certificate is copied for the gateway to load.
const CERT_DIR: &str = "certs";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("gateway admin directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the gateway image {0} is not on this Docker host; build it (deploy/offline-images) or pull it"
    )]
    NoImage(String),
    #[error("the gateway did not start: {0}")]
    NotReady(String),
    #[error("the gateway refused its config: {0}")]
    Refused(String),
    /// Docker's own words bury the address past the 140 characters a commit status shows.
    #[error(
        "the gateway cannot listen on {0}: another program has that port (gateway.port, gateway.tls_port)"
    )]
    PortInUse(String),
}

/// The directory shared with the gateway: admin socket, config file, Caddy's own data.
pub fn admin_dir(config: &Config) -> PathBuf {
    config.instance_dir().join("gateway")
}

fn admin_socket(config: &Config) -> PathBuf {
    admin_dir(config).join("admin.sock")
}

/// The host name of a preview's live generation.
pub fn live_host(id: &str, domain: &str) -> String {
    format!("{id}.{domain}")
}

/// The host name under which a generation that is not live yet is health-checked before the
/// switch.
pub fn staging_host(id: &str, generation: u64, domain: &str) -> String {
    format!("{id}-{generation}.{domain}")
}

/// The networks the gateway must have joined to reach every routed container.
pub fn routed_networks(config: &Config, previews: &[Observed]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in previews {
        let live = p.live().unwrap_or(0);
        for &g in p.generations.keys().filter(|&&g| g >= live) {
            out.insert(labels::network_name(&config.instance, &p.id, g));
        }
    }
    out
}

/// Where the route table puts the chosen upstream and the preview id for the handlers after it.
const UPSTREAM: &str = "{previewd.upstream}";
const PREVIEW: &str = "{previewd.preview}";

/// The route table's directory, shared with the gateway ([`routes`]).
pub fn routes_dir(config: &Config) -> PathBuf {
    admin_dir(config).join("routes")
}

/// The gateway's whole Caddy config. It depends on the gateway's settings only, never on the
/// previews: routes live in [`routes_dir`], which Caddy's `file` matcher reads per request, so
/// a preview coming or going never reloads Caddy (see [`routes`] for why that matters). The
/// matched file's name carries the upstream and the preview id; one `map` splits it, and one
/// `reverse_proxy` dials the upstream. Caddy counts in-flight requests per resolved address,
/// which is what [`drain`] reads.
pub fn caddy_config(config: &Config) -> Value {
    let domain = &config.gateway.domain;
    let table = format!("{MOUNT}/routes");
    // The id is the host label just left of the domain.
    let id_label = domain.split('.').count();
    let not_found = |vars: Value, body: String| {
        json!({
            "match": [{"vars": vars}],
            "handle": [{"handler": "static_response", "status_code": 404, "body": body}],
        })
    };
    let routes = json!([
        // A dot segment would let a path reach a service other than the one its prefix names
        // (Caddy's path matchers clean paths; the table's lookup cleans the joined path too).
        // Browsers resolve dot segments before sending, so only hand-made requests have them.
        {
            "match": [{"vars_regexp": {"{http.request.uri.path}": {"pattern": r"(^|/)\.\.?(/|$)"}}}],
            "handle": [{"handler": "static_response", "status_code": 400,
                        "body": "previewd: a path with a . or .. segment is not routed\n"}],
        },
        // Evaluated lazily, when the routes below read its outputs: by then the `file` matcher
        // has run. No file matched: both outputs empty.
        {
            "handle": [{
                "handler": "map",
                "source": "{http.matchers.file.relative}",
                "destinations": [UPSTREAM, PREVIEW],
                "mappings": [{"input_regexp": "/=([^=/]*)=([^=/]*)$", "outputs": ["${1}", "${2}"]}],
                "defaults": ["", ""],
            }],
        },
        {
            "match": [{"file": {"root": table, "try_files": routes::candidates()}}],
            "handle": [{"handler": "vars"}],
        },
        // (One key per `vars` matcher: a matcher with several keys matches when any does.)
        // Every table entry names its preview, so no preview means no entry matched.
        not_found(
            json!({PREVIEW: [""]}),
            format!(
                "previewd: no preview has the id \"{{http.request.host.labels.{id_label}}}\" \
                 (preview host names are lower case)\n"
            ),
        ),
        not_found(
            json!({UPSTREAM: [""]}),
            format!("previewd: preview {PREVIEW} has no service at this path\n"),
        ),
        {
            "handle": [{
                "handler": "reverse_proxy",
                "upstreams": [{"dial": UPSTREAM}],
                // Dev servers' live-reload sockets survive a config load (which only a new
                // previewd version still makes: new settings recreate the gateway).
                "stream_close_delay": "5m",
            }],
        },
    ]);
    let mut servers = serde_json::Map::new();
    servers.insert(
        "previewd".into(),
        json!({
            "listen": [format!(":{LISTEN_PORT}")],
            "automatic_https": {"disable": true},
            "routes": routes,
        }),
    );
    let mut apps = serde_json::Map::new();
    match &config.gateway.tls {
        Tls::Off => {}
        Tls::OnDemand { issuer, email } => {
            servers.insert(
                "previewd_tls".into(),
                json!({
                    "listen": [format!(":{TLS_PORT}")],
                    "automatic_https": {"disable_redirects": true},
                    "tls_connection_policies": [{}],
                    "routes": routes,
                }),
            );
            // Only a live preview's host has the mark; the asked name is cleaned and kept
            // inside the table like any request path.
            let mark = format!("/{{http.request.uri.query.domain}}/{}", routes::TLS_MARK);
            servers.insert(
                "previewd_ask".into(),
                json!({
                    "listen": [ASK_LISTEN],
                    "automatic_https": {"disable": true},
                    "routes": [
                        {
                            "match": [{"path": ["/tls/ask"], "file": {"root": table, "try_files": [mark]}}],
                            "handle": [{"handler": "static_response", "status_code": 200}],
                        },
                        {"handle": [{"handler": "static_response", "status_code": 403}]},
                    ],
                }),
            );
            let issuer = match (issuer.as_str(), email) {
                ("internal", _) => json!({"module": "internal"}),
                (_, Some(e)) => json!({"module": "acme", "email": e}),
                (_, None) => json!({"module": "acme"}),
            };
            apps.insert(
                "tls".into(),
                json!({"automation": {
                    "policies": [{"on_demand": true, "issuers": [issuer]}],
                    "on_demand": {"permission": {
                        "module": "http",
                        "endpoint": format!("http://{ASK_LISTEN}/tls/ask"),
                    }},
                }}),
            );
        }
        Tls::Wildcard { .. } => {
            servers.insert(
                "previewd_tls".into(),
                json!({
                    "listen": [format!(":{TLS_PORT}")],
                    "automatic_https": {"disable": true},
                    "tls_connection_policies": [{"certificate_selection": {"any_tag": ["previewd"]}}],
                    "routes": routes,
                }),
            );
            apps.insert(
                "tls".into(),
                json!({"certificates": {"load_files": [{
                    "certificate": format!("{MOUNT}/{CERT_DIR}/cert.pem"),
                    "key": format!("{MOUNT}/{CERT_DIR}/key.pem"),
                    "tags": ["previewd"],
                }]}}),
            );
        }
    }
    apps.insert("http".into(), json!({"servers": servers}));
    json!({
        // Every loaded config carries its admin block, or Caddy falls back to localhost:2019.
        "admin": {
            "listen": format!("unix/{MOUNT}/admin.sock|0600"),
            "config": {"persist": false},
        },
        "apps": apps,
    })
}

/// Recomputes the route table from Docker, makes sure the gateway runs (with the current
/// config) and has joined every routed network, then writes the table. Starts the gateway on
/// first need.
pub async fn sync(docker: &Docker, config: &Config) -> Result<(), GatewayError> {
    // One change at a time: two syncs computing their tables in one order and writing them in
    // the other would put older routes back.
    let _one = one_change(config).await?;
    let previews = labels::group(docker::members(docker, &config.instance).await?);
    let cfg = caddy_config(config);
    write_config_file(config, &cfg)?;
    let name = labels::gateway_name(&config.instance);
    let table_dir = routes_dir(config);
    let table = routes::table(config, &previews);
    let dir_err = |source| GatewayError::Dir {
        path: table_dir.clone(),
        source,
    };
    // The gateway comes with the first route: a pass that finds nothing to route (a reconcile
    // while the first deployment is still building) must not start it.
    if table.is_empty()
        && let Err(e) = docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
        && docker::is_not_found(&e)
    {
        return routes::write(&table_dir, &table).map_err(dir_err);
    }
    let joined = ensure_running(docker, config).await?;
    let wanted = routed_networks(config, &previews);
    for net in wanted.difference(&joined) {
        let req = NetworkConnectRequest {
            container: name.clone(),
            ..Default::default()
        };
        match docker.connect_network(net, req).await {
            Ok(()) => {}
            // Already connected (a race with another process) is fine.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403, ..
            }) => {}
            // A leftover whose network is gone (a crash between steps) must not keep every
            // other preview from being routed; reconcile removes the leftover itself.
            Err(e) if docker::is_not_found(&e) => {
                tracing::warn!(network = %net, "not routing a generation whose network is gone");
            }
            Err(e) => return Err(DockerError::from(e).into()),
        }
    }
    routes::write(&table_dir, &table).map_err(dir_err)?;
    load_if_changed(config, &cfg).await?;
    // Leave only networks no container of ours is on any more. A retiring generation's network
    // stays joined until it is removed: requests already sent to it must be able to finish.
    let present: BTreeSet<String> = previews
        .iter()
        .flat_map(|p| {
            p.generations
                .keys()
                .map(|g| labels::network_name(&config.instance, &p.id, *g))
        })
        .collect();
    for net in joined.difference(&present) {
        if net.starts_with(&format!("{}-", config.instance)) {
            leave(docker, config, net).await;
        }
    }
    Ok(())
}

/// Waits until the gateway has no request in flight to any upstream whose address starts with
/// one of `prefixes` (a retiring generation's), at least `min` (a request accepted just before
/// the switch may not be counted yet) and at most `max`. Caddy reports in-flight requests per
/// upstream on its admin API, so this is exact where a fixed pause is a guess.
pub async fn drain(config: &Config, prefixes: &[String], min: Duration, max: Duration) {
    let start = tokio::time::Instant::now();
    tokio::time::sleep(min).await;
    while start.elapsed() < max {
        let busy = match http::unix(
            &admin_socket(config),
            "GET",
            "/reverse_proxy/upstreams",
            None,
            Duration::from_secs(5),
        )
        .await
        {
            Ok(r) if r.status == 200 => serde_json::from_slice::<Vec<Value>>(&r.body)
                .map(|ups| {
                    ups.iter().any(|u| {
                        let addr = u["address"].as_str().unwrap_or("");
                        let n = u["num_requests"].as_u64().unwrap_or(0);
                        n > 0 && prefixes.iter().any(|p| addr.starts_with(p.as_str()))
                    })
                })
                .unwrap_or(false),
            // No answer: nothing better to go on than the time already waited.
            _ => false,
        };
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Disconnects the gateway from a network so the network can be removed.
pub async fn leave(docker: &Docker, config: &Config, network: &str) {
    let req = NetworkDisconnectRequest {
        container: labels::gateway_name(&config.instance),
        force: Some(true),
    };
    let _ = docker.disconnect_network(network, req).await;
}

/// Removes the gateway container when no preview is left (checked under the same lock as
/// [`sync`], so a preview routed meanwhile keeps its gateway). Returns whether it did.
pub async fn remove_if_unused(docker: &Docker, config: &Config) -> Result<bool, GatewayError> {
    let _one = one_change(config).await?;
    if !docker::members(docker, &config.instance).await?.is_empty() {
        return Ok(false);
    }
    docker::remove_container(docker, &labels::gateway_name(&config.instance)).await?;
    let table = routes_dir(config);
    if table.exists() {
        routes::write(&table, &BTreeSet::new()).map_err(|source| GatewayError::Dir {
            path: table,
            source,
        })?;
    }
    Ok(true)
}

/// Serializes changes to the gateway within this process.
static SYNC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held while the gateway changes; dropping it lets the next change in.
struct OneChange {
    _here: tokio::sync::MutexGuard<'static, ()>,
    /// The exclusive `flock` on [`lock_path`], released when the file is closed.
    _across: std::fs::File,
}

/// The file whose lock serializes gateway changes across previewd processes of one instance.
pub fn lock_path(config: &Config) -> PathBuf {
    admin_dir(config).join("routes.lock")
}

/// Waits for the right to change the gateway: first among this process's tasks, then among
/// the instance's processes (`serve` and the CLI beside it). Each computes the route table from
/// the labels it listed; one that listed before another's change and wrote after it would take
/// that change's routes away until the next sync.
async fn one_change(config: &Config) -> Result<OneChange, GatewayError> {
    let here = SYNC.lock().await;
    let path = lock_path(config);
    let dir = admin_dir(config);
    let opened = path.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let file = super::lockfile::open(&opened)?;
        // Only previewd's user (and so the gateway, which runs as that user) may enter.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        file.lock()?;
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let across = locked.map_err(|source| GatewayError::Dir { path, source })?;
    Ok(OneChange {
        _here: here,
        _across: across,
    })
}

/// Loads `cfg` unless the gateway already runs it. The config changes only with the gateway's
/// settings (which recreate the container) or with a new previewd, so this is almost always a
/// no-op; a load is a full reload, which is what the route table exists to avoid.
async fn load_if_changed(config: &Config, cfg: &Value) -> Result<(), GatewayError> {
    let running = http::unix(
        &admin_socket(config),
        "GET",
        "/config/",
        None,
        Duration::from_secs(5),
    )
    .await
    .ok()
    .filter(|r| r.status == 200)
    .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok());
    if running.as_ref() == Some(cfg) {
        return Ok(());
    }
    load(config, cfg).await
}

async fn load(config: &Config, cfg: &Value) -> Result<(), GatewayError> {
    let body = serde_json::to_vec(cfg).map_err(|e| GatewayError::Refused(e.to_string()))?;
    let res = http::unix(
        &admin_socket(config),
        "POST",
        "/load",
        Some(body),
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| GatewayError::NotReady(e.to_string()))?;
    if res.status != 200 {
        return Err(GatewayError::Refused(format!(
            "{}: {}",
            res.status,
            res.text()
        )));
    }
    Ok(())
}

fn write_config_file(config: &Config, cfg: &Value) -> Result<(), GatewayError> {
    let dir = admin_dir(config);
    let err = |source| GatewayError::Dir {
        path: dir.clone(),
        source,
    };
    // The directory exists, private: `one_change` made it before this change began.
    if let Tls::Wildcard {
        cert_file,
        key_file,
    } = &config.gateway.tls
    {
        let certs = dir.join(CERT_DIR);
        std::fs::create_dir_all(&certs).map_err(err)?;
        for (from, to) in [(cert_file, "cert.pem"), (key_file, "key.pem")] {
            std::fs::copy(from, certs.join(to)).map_err(|source| GatewayError::Dir {
                path: from.clone(),
                source,
            })?;
        }
    }
    let tmp = dir.join(format!("caddy.json.{}.tmp", std::process::id()));
    let body = serde_json::to_vec_pretty(cfg).unwrap_or_default();
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, dir.join("caddy.json")).map_err(err)?;
    Ok(())
}

/// Starts the gateway if needed and waits for its admin socket; returns the networks it has
/// joined.
async fn ensure_running(
    docker: &Docker,
    config: &Config,
) -> Result<BTreeSet<String>, GatewayError> {
    let name = labels::gateway_name(&config.instance);
    let inspect = docker
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await;
    let wanted = settings_hash(config);
    let inspect = match inspect {
        // Made with other settings (port, bind, TLS, image): replace it, or they never apply.
        Ok(info)
            if info
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(labels::GATEWAY_SETTINGS))
                != Some(&wanted) =>
        {
            tracing::info!("the gateway's settings changed: recreating it");
            docker::remove_container(docker, &name).await?;
            docker
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
        }
        other => other,
    };
    let info = match inspect {
        Ok(info) => info,
        Err(e) if docker::is_not_found(&e) => {
            create(docker, config, &name).await?;
            docker
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await
                .map_err(DockerError::from)?
        }
        Err(e) => return Err(DockerError::from(e).into()),
    };
    let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if !running {
        // A stale socket from the last run would answer nothing; Caddy makes a new one.
        let _ = std::fs::remove_file(admin_socket(config));
        if let Err(e) = docker.start_container(&name, None).await {
            return Err(
                port_in_use(config, &e.to_string()).unwrap_or_else(|| DockerError::from(e).into())
            );
        }
    }
    wait_for_admin(docker, config, &name).await?;
    let joined = info
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    Ok(joined)
}

/// Docker's answer when the gateway's published port is taken ("port is already allocated" by
/// another container, "address already in use" by another program), as the address it names.
fn port_in_use(config: &Config, docker_says: &str) -> Option<GatewayError> {
    let taken = ["port is already allocated", "address already in use"];
    if !taken.iter().any(|t| docker_says.contains(t)) {
        return None;
    }
    let g = &config.gateway;
    let tls_named = docker_says.contains(&format!(":{}", g.tls_port));
    let port = if g.tls != Tls::Off && tls_named {
        g.tls_port
    } else {
        g.port
    };
    Some(GatewayError::PortInUse(format!("{}:{port}", g.bind)))
}

/// What the gateway container is made from; a change means a new container.
fn settings_hash(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let g = &config.gateway;
    let tls = match &g.tls {
        Tls::Off => "off".to_owned(),
        Tls::OnDemand { .. } => format!("on_demand:{}", g.tls_port),
        Tls::Wildcard { .. } => format!("wildcard:{}", g.tls_port),
    };
    let spec = format!("{}|{}|{}|{tls}", g.image, g.bind, g.port);
    hex::encode(&Sha256::digest(spec.as_bytes())[..8])
}

async fn create(docker: &Docker, config: &Config, name: &str) -> Result<(), GatewayError> {
    let dir = admin_dir(config);
    let meta = std::fs::metadata(&dir).map_err(|source| GatewayError::Dir {
        path: dir.clone(),
        source,
    })?;
    let image = &config.gateway.image;
    if let Err(e) = docker.inspect_image(image).await {
        return Err(if docker::is_not_found(&e) {
            GatewayError::NoImage(image.clone())
        } else {
            DockerError::from(e).into()
        });
    }
    let port_key = format!("{LISTEN_PORT}/tcp");
    let tls_key = format!("{TLS_PORT}/tcp");
    let mut bindings = HashMap::from([(
        port_key.clone(),
        Some(vec![PortBinding {
            host_ip: Some(config.gateway.bind.clone()),
            host_port: Some(config.gateway.port.to_string()),
        }]),
    )]);
    let mut exposed = vec![port_key];
    if config.gateway.tls != Tls::Off {
        bindings.insert(
            tls_key.clone(),
            Some(vec![PortBinding {
                host_ip: Some(config.gateway.bind.clone()),
                host_port: Some(config.gateway.tls_port.to_string()),
            }]),
        );
        exposed.push(tls_key);
    }
    let labels = HashMap::from([
        (labels::INSTANCE.to_owned(), config.instance.to_string()),
        (labels::ROLE.to_owned(), labels::ROLE_GATEWAY.to_owned()),
        (labels::GATEWAY_SETTINGS.to_owned(), settings_hash(config)),
    ]);
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(vec![
            "caddy".into(),
            "run".into(),
            "--config".into(),
            format!("{MOUNT}/caddy.json"),
        ]),
        env: Some(vec![
            format!("HOME={MOUNT}"),
            format!("XDG_CONFIG_HOME={MOUNT}/config"),
            format!("XDG_DATA_HOME={MOUNT}/data"),
        ]),
        // Caddy runs as previewd's own user, so the socket it makes is ours to use.
        user: Some(format!("{}:{}", meta.uid(), meta.gid())),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:{MOUNT}", dir.display())]),
            port_bindings: Some(bindings),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    match docker.create_container(Some(opts), body).await {
        Ok(_) => Ok(()),
        // Another process created it first: use theirs.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(DockerError::from(e).into()),
    }
}

async fn wait_for_admin(docker: &Docker, config: &Config, name: &str) -> Result<(), GatewayError> {
    let socket = admin_socket(config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match http::unix(&socket, "GET", "/config/", None, Duration::from_secs(2)).await {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last = format!("admin API answered {}", r.status),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = docker::log_tail(docker, name, 20).await.join("\n");
    Err(GatewayError::NotReady(format!("{last}\n{logs}")))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ids::PreviewId;
    use crate::preview::labels::{Member, group};

    fn config(domain: &str) -> Config {
        let env = vec![
            ("PREVIEWD_INSTANCE".to_owned(), "pv".to_owned()),
            ("PREVIEWD_GATEWAY_DOMAIN".to_owned(), domain.to_owned()),
        ];
        Config::from_parts(None, Path::new("t"), &env).unwrap()
    }

    #[test]
    fn a_taken_port_is_named_by_its_address() {
        let c = config("localhost");
        let taken = format!(
            "driver failed programming external connectivity on endpoint pv-gateway (0f11c59a): \
             Bind for 127.0.0.1:{} failed: port is already allocated",
            c.gateway.port
        );
        let e = port_in_use(&c, &taken).expect("recognised");
        assert!(
            e.to_string()
                .contains(&format!("cannot listen on 127.0.0.1:{}", c.gateway.port)),
            "{e}"
        );
        let in_use =
            "Error starting userland proxy: listen tcp4 127.0.0.1:80: bind: address already in use";
        assert!(port_in_use(&c, in_use).is_some());
        assert!(port_in_use(&c, "no such image").is_none());
    }

    fn member(
        id: &str,
        service: &str,
        generation: u64,
        route: Option<&str>,
        canonical: bool,
    ) -> Member {
        Member {
            container_id: format!("{id}{service}{generation}"),
            name: String::new(),
            preview: PreviewId::parse(id).unwrap(),
            service: service.to_owned(),
            generation,
            repo: "r".into(),
            branch: "b".into(),
            sha: None,
            pr: None,
            mode: "preview".into(),
            route: route.map(str::to_owned),
            port: route.map(|_| 80),
            created: String::new(),
            forge: "cli".into(),
            health: None,
            state: "running".into(),
            image: String::new(),
            canonical,
        }
    }

    /// What the gateway answers for `host` and `path`: the upstream it dials, or `404 <id>` (a
    /// known preview without that path), or `404` (no such preview).
    fn resolve(config: &Config, previews: &[Observed], host: &str, path: &str) -> String {
        match routes::lookup(&routes::table(config, previews), host, path) {
            Some((upstream, id)) if upstream.is_empty() => format!("404 {id}"),
            Some((upstream, _)) => upstream,
            None => "404".to_owned(),
        }
    }

    #[test]
    fn longest_prefix_first_and_root_last() {
        let previews = group(vec![
            member("aaaaaaaaaa", "web", 1, Some("/"), true),
            member("aaaaaaaaaa", "api", 1, Some("/api"), true),
            member("aaaaaaaaaa", "v2", 1, Some("/api/v2"), true),
            member("aaaaaaaaaa", "db", 1, None, true),
        ]);
        let c = config("localhost");
        let h = "aaaaaaaaaa.localhost";
        for (host, path, want) in [
            (h, "/api/v2/x", "aaaaaaaaaa-v2-1:80"),
            (h, "/api/v2", "aaaaaaaaaa-v2-1:80"),
            (h, "/api/v22", "aaaaaaaaaa-api-1:80"),
            (h, "/api", "aaaaaaaaaa-api-1:80"),
            (h, "/api/", "aaaaaaaaaa-api-1:80"),
            // Case-sensitive, like most proxies' path prefixes.
            (h, "/API/", "aaaaaaaaaa-web-1:80"),
            (h, "/apix", "aaaaaaaaaa-web-1:80"),
            (h, "/", "aaaaaaaaaa-web-1:80"),
            (h, "/a\nb", "aaaaaaaaaa-web-1:80"),
            ("aaaaaaaaaaxlocalhost", "/", "404"),
            ("xaaaaaaaaaa.localhost", "/", "404"),
        ] {
            assert_eq!(resolve(&c, &previews, host, path), want, "{host}{path}");
        }
        let cfg = caddy_config(&c);
        assert_eq!(cfg["admin"]["listen"], "unix//run/previewd/admin.sock|0600");
        let all = &cfg["apps"]["http"]["servers"]["previewd"]["routes"];
        assert_eq!(all[1]["handle"][0]["handler"], "map");
        let file = &all[2]["match"][0]["file"];
        assert_eq!(file["root"], "/run/previewd/routes");
        assert_eq!(file["try_files"], json!(routes::candidates()));
        assert_eq!(all[5]["handle"][0]["upstreams"][0]["dial"], UPSTREAM);
    }

    #[test]
    fn the_config_does_not_depend_on_the_previews() {
        let c = config("localhost");
        let before = caddy_config(&c);
        let previews = group(vec![member("aaaaaaaaaa", "web", 1, Some("/"), true)]);
        assert!(!routes::table(&c, &previews).is_empty());
        assert_eq!(caddy_config(&c), before);
    }

    #[test]
    fn the_map_splits_a_table_entry_into_upstream_and_preview() {
        let cfg = caddy_config(&config("localhost"));
        let map = &cfg["apps"]["http"]["servers"]["previewd"]["routes"][1]["handle"][0];
        let re = regex::Regex::new(map["mappings"][0]["input_regexp"].as_str().unwrap()).unwrap();
        let m = re.captures("/h.localhost/api/=h-api-2:3000=h").unwrap();
        assert_eq!((&m[1], &m[2]), ("h-api-2:3000", "h"));
        let m = re.captures("/h.localhost/==h").unwrap();
        assert_eq!((&m[1], &m[2]), ("", "h"));
        assert!(!re.is_match("/h.localhost/@tls"));
    }

    #[test]
    fn staging_generation_gets_its_own_host_and_retired_none() {
        let previews = group(vec![
            member("aaaaaaaaaa", "web", 1, Some("/"), false),
            member("aaaaaaaaaa", "web", 2, Some("/"), true),
            member("aaaaaaaaaa", "web", 3, Some("/"), false),
        ]);
        let c = config("localhost");
        for (host, want) in [
            ("aaaaaaaaaa.localhost", "aaaaaaaaaa-web-2:80"),
            ("aaaaaaaaaa-3.localhost", "aaaaaaaaaa-web-3:80"),
            ("aaaaaaaaaa-1.localhost", "404"), // generation 1 is retired
        ] {
            assert_eq!(resolve(&c, &previews, host, "/"), want, "{host}");
        }
        // Only the live host may get a certificate on demand.
        let table = routes::table(&c, &previews);
        assert!(table.contains(Path::new("aaaaaaaaaa.localhost/@tls")));
        assert!(!table.contains(Path::new("aaaaaaaaaa-3.localhost/@tls")));
        let nets = routed_networks(&c, &previews);
        assert!(nets.contains("pv-pv-aaaaaaaaaa-2") && nets.contains("pv-pv-aaaaaaaaaa-3"));
        assert!(!nets.contains("pv-pv-aaaaaaaaaa-1"));
    }

    #[test]
    fn unknown_hosts_and_paths_get_a_404_that_names_the_id() {
        let previews = group(vec![member("aaaaaaaaaa", "api", 1, Some("/api"), true)]);
        let c = config("preview.example.com");
        let cfg = caddy_config(&c);
        let all = cfg["apps"]["http"]["servers"]["previewd"]["routes"]
            .as_array()
            .unwrap();
        let unknown = &all[3]["handle"][0];
        assert_eq!(unknown["status_code"], 404);
        // preview.example.com has 3 labels, so the id is label 3 counted from the right.
        assert!(
            unknown["body"]
                .as_str()
                .unwrap()
                .contains("{http.request.host.labels.3}")
        );
        assert_eq!(
            resolve(&c, &previews, "aaaaaaaaaa.preview.example.com", "/"),
            "404 aaaaaaaaaa"
        );
        assert_eq!(
            resolve(&c, &previews, "bbbbbbbbbb.preview.example.com", "/api"),
            "404"
        );
        assert!(routes::table(&c, &[]).is_empty());
    }

    #[test]
    fn dot_segments_are_refused_before_routing() {
        let cfg = caddy_config(&config("localhost"));
        let first = &cfg["apps"]["http"]["servers"]["previewd"]["routes"][0];
        let pattern = first["match"][0]["vars_regexp"]["{http.request.uri.path}"]["pattern"]
            .as_str()
            .unwrap();
        let re = regex::Regex::new(pattern).unwrap();
        for bad in ["/api/../x", "/..", "/./api", "/a/.", "/api/.."] {
            assert!(re.is_match(bad), "{bad}");
        }
        for good in ["/", "/api/.well-known/x", "/a..b", "/..a/", "/a/b."] {
            assert!(!re.is_match(good), "{good}");
        }
        assert_eq!(first["handle"][0]["status_code"], 400);
    }
}
