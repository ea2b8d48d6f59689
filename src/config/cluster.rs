//! `[cluster]`: which engine runs the previews' services (one Docker host, or the Docker Swarm
//! the Docker endpoint manages) and the registry every node pulls builds from. Only the shape
//! and its checks live here; nothing here reads a file, the environment, or talks to Docker.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where a preview's services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Containers on the one Docker host previewd talks to (the default).
    Docker,
    /// Services on the Docker Swarm whose manager previewd talks to.
    Swarm,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Swarm => "swarm",
        }
    }
}

/// A registry every node of the swarm can pull from, and how previewd signs in to push.
#[derive(Debug, Clone)]
pub struct Registry {
    /// `host[:port]`, without a scheme or path: images are pushed as `<address>/<tag>`.
    pub address: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

/// `[cluster]`, checked.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub engine: Engine,
    /// Set whenever `engine` is `swarm` (the check refuses a swarm without one).
    pub registry: Option<Registry>,
    /// Swarm placement constraints every preview service gets (`node.role == worker`,
    /// `node.labels.previews == true`): where previews may run, e.g. not on the manager that
    /// runs the gateway and the builds.
    pub constraints: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCluster {
    /// `docker` or `swarm`.
    engine: String,
    /// `registry.example.com:5000`: where builds are pushed for every node.
    registry: Option<String>,
    registry_username: Option<String>,
    registry_password: Option<String>,
    /// `["node.role == worker"]`.
    constraints: Vec<String>,
}

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: why.into(),
    }
}

impl RawCluster {
    pub(super) fn settle(self) -> Result<ClusterConfig, ConfigError> {
        let engine = match self.engine.trim() {
            "docker" => Engine::Docker,
            "swarm" => Engine::Swarm,
            other => {
                return Err(invalid(
                    "cluster.engine",
                    format!("{other:?} is neither \"docker\" nor \"swarm\""),
                ));
            }
        };
        let address = self
            .registry
            .map(|r| r.trim().trim_end_matches('/').to_owned())
            .filter(|r| !r.is_empty());
        if let Some(a) = &address
            && (a.contains("://")
                || !a
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:/_".contains(&b)))
        {
            return Err(invalid(
                "cluster.registry",
                format!("{a:?} is not host[:port] (no scheme): e.g. registry.example.com:5000"),
            ));
        }
        let username = self.registry_username.filter(|u| !u.is_empty());
        let password = self
            .registry_password
            .filter(|p| !p.is_empty())
            .map(SecretString::from);
        if username.is_some() != password.is_some() {
            return Err(invalid(
                "cluster.registry_username",
                "registry credentials need both registry_username and registry_password",
            ));
        }
        let registry = match address {
            Some(address) => Some(Registry {
                address,
                username,
                password,
            }),
            None if username.is_some() => {
                return Err(invalid(
                    "cluster.registry",
                    "registry credentials are set but no registry is",
                ));
            }
            None => None,
        };
        if engine == Engine::Swarm && registry.is_none() {
            return Err(invalid(
                "cluster.registry",
                "engine = \"swarm\" needs a registry every node can pull from (host[:port])",
            ));
        }
        let constraints: Vec<String> = self
            .constraints
            .into_iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        if let Some(c) = constraints
            .iter()
            .find(|c| !c.contains("==") && !c.contains("!="))
        {
            return Err(invalid(
                "cluster.constraints",
                format!("{c:?} is not a Swarm constraint (`node.role == worker`)"),
            ));
        }
        if engine == Engine::Docker && !constraints.is_empty() {
            return Err(invalid(
                "cluster.constraints",
                "placement constraints need engine = \"swarm\"",
            ));
        }
        Ok(ClusterConfig {
            engine,
            registry,
            constraints,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::Engine;
    use crate::config::tests::load;
    use crate::config::{Config, ConfigError};

    fn refused_key(r: Result<Config, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn one_docker_host_is_the_default_and_needs_no_registry() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.cluster.engine, Engine::Docker);
        assert!(c.cluster.registry.is_none());
    }

    #[test]
    fn a_swarm_reads_its_registry_and_credentials_from_file_or_environment() {
        let text = "[limits]\negress = \"all\"\nidle_sleep = \"0\"\n[cluster]\nengine = \"swarm\"\nregistry = \"reg.example.com:5000/\"\n";
        let c = load(
            Some(text),
            &[
                ("PREVIEWD_CLUSTER_REGISTRY_USERNAME", "bot"),
                ("PREVIEWD_CLUSTER_REGISTRY_PASSWORD", "hunter2"),
            ],
        )
        .unwrap();
        assert_eq!(c.cluster.engine, Engine::Swarm);
        let r = c.cluster.registry.unwrap();
        assert_eq!(r.address, "reg.example.com:5000");
        assert_eq!(r.username.as_deref(), Some("bot"));
        assert_eq!(r.password.unwrap().expose_secret(), "hunter2");
    }

    #[test]
    fn what_a_swarm_cannot_do_is_refused_by_its_key() {
        let swarm = [("PREVIEWD_CLUSTER_ENGINE", "swarm")];
        let all = ("PREVIEWD_LIMITS_EGRESS", "all");
        let awake = ("PREVIEWD_LIMITS_IDLE_SLEEP", "0");
        assert_eq!(
            refused_key(load(None, &[swarm[0], all, awake])),
            "cluster.registry"
        );
        let reg = ("PREVIEWD_CLUSTER_REGISTRY", "10.0.0.1:5000");
        // The egress filter does not reach other nodes: refused, never silently off.
        assert_eq!(
            refused_key(load(None, &[swarm[0], reg, awake])),
            "limits.egress"
        );
        assert_eq!(
            refused_key(load(None, &[swarm[0], reg, all])),
            "limits.idle_sleep"
        );
        assert!(load(None, &[swarm[0], reg, all, awake]).is_ok());
        let user = ("PREVIEWD_CLUSTER_REGISTRY_USERNAME", "bot");
        assert_eq!(
            refused_key(load(None, &[swarm[0], reg, all, awake, user])),
            "cluster.registry_username"
        );
        let scheme = ("PREVIEWD_CLUSTER_REGISTRY", "https://reg.example.com");
        assert_eq!(
            refused_key(load(None, &[swarm[0], scheme, all, awake])),
            "cluster.registry"
        );
        let on_worker = (
            "PREVIEWD_CLUSTER_CONSTRAINTS",
            "node.role == worker, node.labels.x!=y",
        );
        let c = load(None, &[swarm[0], reg, all, awake, on_worker]).unwrap();
        assert_eq!(
            c.cluster.constraints,
            ["node.role == worker", "node.labels.x!=y"]
        );
        let vague = ("PREVIEWD_CLUSTER_CONSTRAINTS", "worker");
        assert_eq!(
            refused_key(load(None, &[swarm[0], reg, all, awake, vague])),
            "cluster.constraints"
        );
        assert_eq!(refused_key(load(None, &[on_worker])), "cluster.constraints");
        let kube = ("PREVIEWD_CLUSTER_ENGINE", "kubernetes");
        assert_eq!(refused_key(load(None, &[kube])), "cluster.engine");
    }
}
