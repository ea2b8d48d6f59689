//! The directory previewd shares with the gateway alone (admin socket, `caddy.json`, the route
//! table, certificates, Caddy's own data), the lock that lets one gateway change happen at a
//! time across the instance's processes, and loading Caddy's config through the admin API.
//! The admin API is only ever a unix socket in that private directory, never a TCP port a
//! preview could reach; a config is loaded only when the running one differs, since a load is
//! a full reload. Nothing here talks to Docker.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::GatewayError;
use super::caddy::CERT_DIR;
use crate::config::{Config, Tls};
use crate::preview::http_client as http;

/// The directory shared with the gateway: admin socket, config file, Caddy's own data.
pub fn admin_dir(config: &Config) -> PathBuf {
    config.instance_dir().join("gateway")
}

pub(super) fn admin_socket(config: &Config) -> PathBuf {
    admin_dir(config).join("admin.sock")
}

/// The route table's directory, shared with the gateway ([`routes`](super::routes)).
pub fn routes_dir(config: &Config) -> PathBuf {
    admin_dir(config).join("routes")
}

/// Serializes changes to the gateway within this process.
static SYNC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held while the gateway changes; dropping it lets the next change in.
pub(super) struct OneChange {
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
pub(super) async fn one_change(config: &Config) -> Result<OneChange, GatewayError> {
    let here = SYNC.lock().await;
    let path = lock_path(config);
    let dir = admin_dir(config);
    let opened = path.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let file = crate::preview::docker::lockfile::open(&opened)?;
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

/// Loads `cfg` unless the gateway already runs it (`running`: its config as its admin API
/// answered it within this change, which holds the lock: nothing else loads one meanwhile).
/// The config changes only with the gateway's settings (which recreate the container) or with
/// a new previewd, so this is almost always a no-op; a load is a full reload, which is what
/// the route table exists to avoid.
pub(super) async fn load_if_changed(
    config: &Config,
    cfg: &Value,
    running: Option<Value>,
) -> Result<(), GatewayError> {
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

pub(super) fn write_config_file(config: &Config, cfg: &Value) -> Result<(), GatewayError> {
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
