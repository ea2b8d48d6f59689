//! Every key of the compose specification, sorted into accepted (with its meaning, applied
//! elsewhere) and refused (with why). A first pass over the whole tree names every refused or
//! unknown key at once, then takes them out so that the values of the rest can still be
//! checked: `check` shows all problems in one round. Nothing here accepts a value: a key
//! accepted here is checked by the module that reads it.

use yaml_serde::{Mapping, Value};

use crate::spec::SpecError;
use crate::spec::hostile;
use crate::spec::yaml::{clip, join};

type RuleFn = fn(&str) -> Option<Rule>;

/// What becomes of a key.
enum Rule {
    Accept,
    Refuse(&'static str),
}
use Rule::{Accept, Refuse};

const HOST: &str = "it would give the preview some of the host";
const NO_CPU_KNOBS: &str = "previewd applies the operator's CPU limit; use `cpus` or \
     `deploy.resources.limits.cpus` (clamped to it)";
const OUTSIDE: &str = "it names containers outside this preview; previews reach only their \
     own services";
const NOT_YET: &str = "previewd does not run this compose feature; remove it";
const SOCKET: &str = "it mounts the Docker socket, which would give the preview control of \
     every container on the host";

fn service_key(key: &str) -> Option<Rule> {
    Some(match key {
        "build" | "image" | "command" | "entrypoint" | "environment" | "env_file" | "ports"
        | "expose" | "depends_on" | "healthcheck" | "restart" | "init" | "tty" | "stdin_open"
        | "working_dir" | "user" | "group_add" | "stop_signal" | "stop_grace_period" | "tmpfs"
        | "shm_size" | "ulimits" | "deploy" | "profiles" | "platform" | "pull_policy"
        | "volumes" | "networks" | "hostname" | "domainname" | "container_name" | "links"
        | "secrets" | "configs" | "labels" | "read_only" | "cap_drop" | "sysctls"
        | "extra_hosts" | "mem_limit" | "mem_reservation" | "memswap_limit" | "cpus"
        | "pids_limit" | "scale" | "attach" | "develop" | "oom_score_adj" | "dns"
        | "dns_search" | "dns_opt" | "x-previewd" | "label_file" | "annotations" | "post_start"
        | "pre_stop" => Accept,
        // Expanded by `merge` before this pass; never left in the tree.
        "extends" => Accept,
        "privileged"
        | "cap_add"
        | "devices"
        | "device_cgroup_rules"
        | "gpus"
        | "network_mode"
        | "pid"
        | "ipc"
        | "uts"
        | "userns_mode"
        | "cgroup"
        | "cgroup_parent"
        | "security_opt" => Refuse(hostile::reason(key).unwrap_or(HOST)),
        "use_api_socket" => Refuse(SOCKET),
        "volumes_from" | "external_links" => Refuse(OUTSIDE),
        "cpu_count" | "cpu_percent" | "cpu_shares" | "cpu_period" | "cpu_quota"
        | "cpu_rt_runtime" | "cpu_rt_period" | "cpuset" => Refuse(NO_CPU_KNOBS),
        // `runtime: runc` (Docker's default) is accepted by `options`; any other is refused
        // there, naming the runtime.
        "runtime" => Accept,
        "isolation" => Refuse("Windows-only; previews run Linux containers"),
        "oom_kill_disable" | "mem_swappiness" => {
            Refuse("the host's out-of-memory handling is not a preview's to change")
        }
        "storage_opt" | "blkio_config" => {
            Refuse("previews get no say in the host's storage and block I/O settings")
        }
        "logging" => Refuse(
            "previewd keeps every preview's logs in Docker's json-file driver, size-capped \
             (`previewd logs`); a log driver could write to the host",
        ),
        "mac_address" => Refuse("previewd addresses every preview's containers itself"),
        "credential_spec" => Refuse("Windows-only; previews run Linux containers"),
        "provider" | "models" => Refuse(NOT_YET),
        _ => return None,
    })
}

fn build_key(key: &str) -> Option<Rule> {
    Some(match key {
        "context" | "dockerfile" | "args" | "target" | "labels" | "cache_from" | "no_cache"
        | "pull" | "tags" | "platforms" | "shm_size" => Accept,
        "ssh" | "entitlements" | "network" | "privileged" => {
            Refuse(hostile::reason(key).unwrap_or(HOST))
        }
        "secrets" => Refuse(
            "build secrets come from the operator's config, never from the repository's file",
        ),
        "extra_hosts"
        | "isolation"
        | "ulimits"
        | "cache_to"
        | "additional_contexts"
        | "dockerfile_inline"
        | "provenance"
        | "sbom" => Refuse(NOT_YET),
        _ => return None,
    })
}

fn deploy_key(key: &str) -> Option<Rule> {
    Some(match key {
        "resources" | "restart_policy" | "replicas" | "mode" | "labels" | "update_config"
        | "rollback_config" | "placement" | "endpoint_mode" => Accept,
        _ => return None,
    })
}

fn top_key(key: &str) -> Option<Rule> {
    Some(match key {
        "version" | "name" | "services" | "volumes" | "networks" | "secrets" | "configs" => Accept,
        // Expanded by `merge` before this pass; never left in the tree.
        "include" => Accept,
        "models" => Refuse(NOT_YET),
        _ => return None,
    })
}

fn volume_key(key: &str) -> Option<Rule> {
    Some(match key {
        "labels" | "name" | "external" | "driver" => Accept,
        "driver_opts" => Refuse(
            "driver options can bind any host path into the volume; previews get plain \
             volumes",
        ),
        _ => return None,
    })
}

fn network_key(key: &str) -> Option<Rule> {
    Some(match key {
        "labels" | "name" | "external" | "driver" | "internal" | "attachable" | "enable_ipv4"
        | "enable_ipv6" => Accept,
        "driver_opts" => Refuse("previews' networks are plain bridges previewd configures"),
        // Read by `project`: the subnets are not used, other drivers refused.
        "ipam" => Accept,
        _ => return None,
    })
}

fn file_object_key(key: &str) -> Option<Rule> {
    Some(match key {
        // `content` is a config's only: `project` refuses it on a secret.
        "file" | "name" | "external" | "content" => Accept,
        "environment" => Refuse(
            "it would copy a variable of previewd's own environment, where its secrets live: \
             use `file:` with a file of the repository",
        ),
        "driver" | "driver_opts" | "template_driver" | "labels" => Refuse(NOT_YET),
        _ => return None,
    })
}

const UNKNOWN: &str = "is not a key of the compose specification; previewd never ignores a \
     setting silently, so remove it (or prefix it with `x-` for an extension)";

/// Names every refused or unknown key of the file (after `x-*` keys are gone) and removes it
/// from `tree`, so that what is left can be read and checked on.
pub(super) fn refuse_keys(file: &str, tree: &mut Value) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut refuse = |key: String, reason: &str| {
        errors.push(SpecError::Refused {
            file: file.to_owned(),
            key,
            reason: reason.to_owned(),
        })
    };
    let Some(top) = tree.as_mapping_mut() else {
        return errors;
    };
    sweep(top, "", top_key, &mut refuse);
    if let Some(services) = top.get_mut("services").and_then(Value::as_mapping_mut) {
        for (name, service) in services.iter_mut() {
            let prefix = join("services", &clip(name.as_str().unwrap_or_default()));
            let Some(service) = service.as_mapping_mut() else {
                continue;
            };
            sweep(service, &prefix, service_key, &mut refuse);
            if let Some(build) = service.get_mut("build").and_then(Value::as_mapping_mut) {
                sweep(build, &join(&prefix, "build"), build_key, &mut refuse);
            }
            if let Some(deploy) = service.get_mut("deploy").and_then(Value::as_mapping_mut) {
                sweep(deploy, &join(&prefix, "deploy"), deploy_key, &mut refuse);
            }
        }
    }
    let sections: [(&str, RuleFn); 4] = [
        ("volumes", volume_key),
        ("networks", network_key),
        ("secrets", file_object_key),
        ("configs", file_object_key),
    ];
    for (section, rule) in sections {
        let Some(entries) = top.get_mut(section).and_then(Value::as_mapping_mut) else {
            continue;
        };
        for (name, entry) in entries.iter_mut() {
            let prefix = join(section, &clip(name.as_str().unwrap_or_default()));
            if let Some(entry) = entry.as_mapping_mut() {
                sweep(entry, &prefix, rule, &mut refuse);
            }
        }
    }
    errors
}

/// Refuses and removes the keys of `map` that `rule` does not accept.
fn sweep(map: &mut Mapping, prefix: &str, rule: RuleFn, refuse: &mut impl FnMut(String, &str)) {
    map.retain(|k, _| {
        let key = k.as_str().unwrap_or_default();
        match rule(key) {
            Some(Accept) => true,
            Some(Refuse(reason)) => {
                refuse(join(prefix, &clip(key)), reason);
                false
            }
            None => {
                refuse(join(prefix, &clip(key)), UNKNOWN);
                false
            }
        }
    });
}

/// Removes `x-*` keys wherever compose allows extensions: at the top level, in services (but
/// `x-previewd`), in their `build` and `deploy`, and in every volume, network, secret and
/// config.
pub(super) fn strip_extensions(tree: &mut Value) {
    fn strip(map: &mut Mapping, keep: Option<&str>) {
        map.retain(|k, _| {
            k.as_str()
                .is_none_or(|k| !k.starts_with("x-") || Some(k) == keep)
        });
    }
    let Some(top) = tree.as_mapping_mut() else {
        return;
    };
    strip(top, None);
    for section in ["services", "volumes", "networks", "secrets", "configs"] {
        let Some(entries) = top.get_mut(section).and_then(Value::as_mapping_mut) else {
            continue;
        };
        for (_, entry) in entries.iter_mut() {
            let Some(entry) = entry.as_mapping_mut() else {
                continue;
            };
            strip(entry, Some("x-previewd"));
            for inner in ["build", "deploy"] {
                if let Some(m) = entry.get_mut(inner).and_then(Value::as_mapping_mut) {
                    strip(m, None);
                }
            }
        }
    }
}
