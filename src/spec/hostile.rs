//! Keys that would hand a preview some of the host: privileged mode, host namespaces, added
//! capabilities, devices, mounts (and the Docker socket through them), published host ports.
//! They are refused with a reason of their own, before the raw structs would refuse them as
//! merely unknown, so that the person reading the PR learns why. Nothing here accepts a key:
//! this module can only refuse.

use yaml_serde::Value;

use super::SpecError;
use super::yaml::{clip, join};

/// Why a key is refused, when it is one that reaches the host.
pub fn reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "privileged" => "it would give the container full control of the host",
        "cap_add" => "previews get no added Linux capabilities",
        "devices" | "device_cgroup_rules" | "gpus" => "previews get no host devices",
        "network_mode" | "network" | "networks" => {
            "previews run on their own network only; host networking or other networks would \
             expose the host and the other previews"
        }
        "pid" | "ipc" | "uts" | "userns_mode" | "cgroup" | "cgroup_parent" => {
            "previews share no namespace with the host or with other containers"
        }
        "security_opt" => "previews keep Docker's default confinement (seccomp, AppArmor)",
        "sysctls" => "previews cannot change kernel parameters",
        "volumes" | "volumes_from" | "mounts" => {
            "previews get no host mounts or volumes: the code goes into the image (use `build`)"
        }
        "published" | "host_ip" => {
            "previews publish no host ports: give the container port only, and the gateway \
             routes to it"
        }
        "ssh" => "an SSH agent is never forwarded into a preview's build",
        "entitlements" => "previews' builds get no entitlements (network.host, security.insecure)",
        _ => return None,
    })
}

/// The reason given for any other key outside the supported subset.
pub const UNSUPPORTED: &str = "is not in the subset previewd reads (see docs/config.md); \
     previewd never ignores a setting silently, so remove it";

/// Refuses hostile keys in every service (and its `build` mapping) of the given top-level
/// sections (`services`, `dev`), naming every one in file order, so that one round of fixes
/// removes them all.
pub fn refuse_hostile(file: &str, tree: &Value, sections: &[&str]) -> Result<(), SpecError> {
    let mut refused = Vec::new();
    for section in sections {
        let Some(services) = tree.get(*section).and_then(Value::as_mapping) else {
            continue;
        };
        for (name, service) in services {
            let name = name.as_str().map(clip).unwrap_or_default();
            let prefix = join(section, &name);
            check_mapping(file, &prefix, service, &mut refused);
            if let Some(build) = service.get("build") {
                check_mapping(file, &join(&prefix, "build"), build, &mut refused);
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(SpecError::from_all(refused))
    }
}

fn check_mapping(file: &str, prefix: &str, node: &Value, refused: &mut Vec<SpecError>) {
    let Some(mapping) = node.as_mapping() else {
        return;
    };
    for (key, value) in mapping {
        let Some(key) = key.as_str() else { continue };
        let Some(reason) = reason(key) else { continue };
        let reason = if mentions_docker_socket(value) {
            "it mounts the Docker socket, which would give the preview control of every \
             container on the host"
        } else {
            reason
        };
        refused.push(SpecError::Refused {
            file: file.to_owned(),
            key: join(prefix, key),
            reason: reason.to_owned(),
        });
    }
}

fn mentions_docker_socket(value: &Value) -> bool {
    yaml_serde::to_string(value)
        .map(|s| s.contains("docker.sock"))
        .unwrap_or(false)
}
