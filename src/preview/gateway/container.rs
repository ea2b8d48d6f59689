//! The gateway container's life: made from the gateway's settings with the first route (and
//! made again when those settings change), started, waited for until its admin socket answers,
//! removed with the last preview. It runs Caddy as previewd's own user with
//! `no-new-privileges`, publishes only the HTTP(S) ports and mounts only the shared directory;
//! it is never removed while a preview is left, and never holds a route of its own.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions};

use super::admin::{admin_dir, admin_socket, one_change, routes_dir};
use super::caddy::{LISTEN_PORT, MOUNT, TLS_PORT};
use super::routes;
use super::{Gateway, GatewayError};
use crate::config::{Config, Tls};
use crate::preview::docker::{self, DockerError, labels};
use crate::preview::http_client as http;
use serde_json::Value;

impl Gateway {
    /// Removes the gateway container when no preview is left (checked under the same lock as
    /// [`Gateway::sync`], so a preview routed meanwhile keeps its gateway). Returns whether it
    /// did.
    pub async fn remove_if_unused(&self) -> Result<bool, GatewayError> {
        let Gateway { docker, config, .. } = self;
        let _one = one_change(config).await?;
        if !docker::placed::members(docker, config).await?.is_empty() {
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

    /// Starts the gateway if needed and waits for its admin socket; returns the networks it has
    /// joined and the config it runs (None when it did not answer with one). `inspect` is the
    /// gateway container's inspection, made by the caller beside its other reads.
    pub(super) async fn ensure_running(
        &self,
        inspect: Result<ContainerInspectResponse, bollard::errors::Error>,
    ) -> Result<(BTreeSet<String>, Option<Value>), GatewayError> {
        let Gateway { docker, config, .. } = self;
        let name = labels::gateway_name(&config.instance);
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
                self.create(&name).await?;
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
                return Err(port_in_use(config, &e.to_string())
                    .unwrap_or_else(|| DockerError::from(e).into()));
            }
        }
        let running = self.wait_for_admin(&name).await?;
        let joined = info
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        Ok((joined, running))
    }
}

/// Docker's answer when the gateway's published port is taken ("port is already allocated" by
/// another container, "address already in use" by another program), as the address it names.
pub(super) fn port_in_use(config: &Config, docker_says: &str) -> Option<GatewayError> {
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

impl Gateway {
    async fn create(&self, name: &str) -> Result<(), GatewayError> {
        let Gateway { docker, config, .. } = self;
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

    /// Waits until the admin API answers; returns the config it answered with (None when
    /// that is not JSON).
    async fn wait_for_admin(&self, name: &str) -> Result<Option<Value>, GatewayError> {
        let Gateway { docker, config, .. } = self;
        let socket = admin_socket(config);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = String::from("no answer yet");
        while tokio::time::Instant::now() < deadline {
            match http::unix(&socket, "GET", "/config/", None, Duration::from_secs(2)).await {
                Ok(r) if r.status == 200 => return Ok(serde_json::from_slice(&r.body).ok()),
                Ok(r) => last = format!("admin API answered {}", r.status),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs = docker::log_tail(docker, name, 20).await.join("\n");
        Err(GatewayError::NotReady(format!("{last}\n{logs}")))
    }
}
