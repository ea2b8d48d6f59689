//! A compose service's runtime (mounts, health check, container options) as Docker's create
//! request, within the operator's limits: every resource the file asks for is clamped to
//! `[limits]`, and every bind mount is resolved again against the worktree right before it is
//! made (a push may have turned a folder into a symbolic link since the config was read).
//! Secrets and configs with an owner or mode are packed to be copied in (`files_tar`), read
//! again inside the worktree. Nothing here creates anything in Docker; bind-mount folders
//! missing from the worktree are created inside it, as compose creates them.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, Mount as DockerMount, MountTmpfsOptions,
    MountType, MountVolumeOptions, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};

use crate::config::Limits;
use crate::ids::{Instance, PreviewId};
use crate::preview::docker::labels;
use crate::spec::runtime::{Copied, Restart, Runtime};
use crate::spec::{Mount, resolve_inside};

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The mounts of a service, bind sources checked again inside `worktree`.
pub(super) fn mounts(
    inst: &Instance,
    id: &PreviewId,
    run: &Runtime,
    worktree: &Path,
    limits: &Limits,
) -> Result<Vec<DockerMount>, String> {
    let mut out = Vec::new();
    for m in &run.mounts {
        let mount = match m {
            Mount::Volume {
                name,
                target,
                read_only,
                nocopy,
            } => DockerMount {
                target: Some(target.clone()),
                source: Some(labels::volume_name(inst, id, name)),
                typ: Some(MountType::VOLUME),
                read_only: Some(*read_only),
                volume_options: no_copy(*nocopy),
                ..Default::default()
            },
            Mount::Anonymous { target, nocopy } => DockerMount {
                target: Some(target.clone()),
                typ: Some(MountType::VOLUME),
                volume_options: no_copy(*nocopy),
                ..Default::default()
            },
            // Copied in before the container starts: see `files_tar`.
            Mount::File { .. } => continue,
            Mount::Bind {
                source,
                target,
                read_only,
            } => {
                let text = source.to_string_lossy();
                let rel = resolve_inside(worktree, &text)
                    .map_err(|(_, why)| format!("bind mount {text} for {target}: {why}"))?;
                let full = worktree.join(&rel);
                if !full.exists() {
                    std::fs::create_dir_all(&full)
                        .map_err(|e| format!("bind mount {text}: cannot create it: {e}"))?;
                }
                let full = full
                    .canonicalize()
                    .map_err(|e| format!("bind mount {text}: {e}"))?;
                DockerMount {
                    target: Some(target.clone()),
                    source: Some(full.to_string_lossy().into_owned()),
                    typ: Some(MountType::BIND),
                    read_only: Some(*read_only),
                    ..Default::default()
                }
            }
            Mount::Tmpfs { target, size, mode } => DockerMount {
                target: Some(target.clone()),
                typ: Some(MountType::TMPFS),
                tmpfs_options: Some(MountTmpfsOptions {
                    // Memory-backed: never more than the container may use.
                    size_bytes: Some(size.unwrap_or(limits.memory).min(limits.memory)),
                    mode: mode.map(i64::from),
                    ..Default::default()
                }),
                ..Default::default()
            },
        };
        out.push(mount);
    }
    Ok(out)
}

fn no_copy(nocopy: bool) -> Option<MountVolumeOptions> {
    nocopy.then(|| MountVolumeOptions {
        no_copy: Some(true),
        ..Default::default()
    })
}

/// The largest secret or config file copied into a container.
const MAX_FILE: u64 = 1 << 20;

/// The secrets and configs of `run` copied rather than mounted (their owner or mode set, or a
/// config's inline content), as a
/// tar to extract at the container's `/`; `None` when there are none. Each source is resolved
/// again inside `worktree` and must be a regular file.
fn files_tar(run: &Runtime, worktree: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut any = false;
    for m in &run.mounts {
        let Mount::File {
            source,
            target,
            uid,
            gid,
            mode,
        } = m
        else {
            continue;
        };
        let (data, what) = match source {
            Copied::Repo(path) => {
                let text = path.to_string_lossy().into_owned();
                (read_file(worktree, &text, target)?, text)
            }
            Copied::Inline(data) => (data.as_bytes().to_vec(), "inline content".to_owned()),
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_uid(u64::from(*uid));
        header.set_gid(u64::from(*gid));
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, target.trim_start_matches('/'), data.as_slice())
            .map_err(|e| format!("{what}: {e}"))?;
        any = true;
    }
    if !any {
        return Ok(None);
    }
    tar.into_inner().map(Some).map_err(|e| e.to_string())
}

/// A secret's or config's repository file, resolved again inside `worktree`: a regular file
/// of at most 1 MiB.
fn read_file(worktree: &Path, text: &str, target: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let rel =
        resolve_inside(worktree, text).map_err(|(_, why)| format!("{text} for {target}: {why}"))?;
    let path = worktree.join(&rel);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{text}: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(format!(
            "{text} for {target}: must be a regular file of at most 1 MiB"
        ));
    }
    let mut data = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_FILE).read_to_end(&mut data))
        .map_err(|e| format!("{text}: {e}"))?;
    Ok(data)
}

/// Copies the secrets and configs of `run` that have their own owner or mode into the created
/// container `name`, before it starts.
pub(super) async fn copy_files(
    docker: &bollard::Docker,
    name: &str,
    run: &Runtime,
    worktree: &Path,
) -> Result<(), String> {
    let Some(tar) = files_tar(run, worktree)? else {
        return Ok(());
    };
    let opts = bollard::query_parameters::UploadToContainerOptions {
        path: "/".to_owned(),
        ..Default::default()
    };
    docker
        .upload_to_container(name, Some(opts), bollard::body_full(tar.into()))
        .await
        .map_err(|e| crate::preview::docker::DockerError::from(e).to_string())
}

/// Applies `run`'s container options to `body`, clamped to `limits`. `oneshot`: a job others
/// wait to complete, not restarted unless the file says so.
pub(super) fn apply(body: &mut ContainerCreateBody, run: &Runtime, limits: &Limits, oneshot: bool) {
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    let r = &run.resources;
    host.memory = Some(r.memory.map_or(limits.memory, |m| m.min(limits.memory)));
    let cpus = r.cpus.map_or(limits.cpus, |c| c.min(limits.cpus));
    host.nano_cpus = Some((cpus * 1e9) as i64);
    host.pids_limit = Some(
        r.pids
            .filter(|p| *p > 0)
            .map_or(limits.pids, |p| p.min(limits.pids)),
    );
    host.memory_reservation = r.memory_reservation.map(|m| m.min(limits.memory));
    host.shm_size = r.shm_size.map(|s| s.min(limits.memory));
    host.init = run.init;
    host.readonly_rootfs = run.read_only.then_some(true);
    if !run.group_add.is_empty() {
        host.group_add = Some(run.group_add.clone());
    }
    if !run.cap_drop.is_empty() {
        host.cap_drop = Some(run.cap_drop.clone());
    }
    if !run.sysctls.is_empty() {
        host.sysctls = Some(run.sysctls.clone().into_iter().collect());
    }
    if !run.extra_hosts.is_empty() {
        host.extra_hosts = Some(run.extra_hosts.clone());
    }
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    host.dns = some(&run.dns);
    host.dns_search = some(&run.dns_search);
    host.dns_options = some(&run.dns_opt);
    if !run.ulimits.is_empty() {
        host.ulimits = Some(
            run.ulimits
                .iter()
                .map(|u| {
                    let cap = match u.name.as_str() {
                        "nproc" => limits.pids,
                        "memlock" | "stack" => limits.memory,
                        _ => i64::MAX,
                    };
                    let clamp = |v: i64| if v < 0 { cap } else { v.min(cap) };
                    ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(clamp(u.soft)),
                        hard: Some(clamp(u.hard)),
                    }
                })
                .collect(),
        );
    }
    let (name, retries) = match run.restart {
        Some(Restart::No) => (RestartPolicyNameEnum::NO, None),
        Some(Restart::Always) => (RestartPolicyNameEnum::ALWAYS, None),
        Some(Restart::OnFailure(n)) => (RestartPolicyNameEnum::ON_FAILURE, n),
        Some(Restart::UnlessStopped) => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        None if oneshot => (RestartPolicyNameEnum::NO, None),
        None => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
    };
    host.restart_policy = Some(RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    });
    if run.entrypoint.is_some() {
        body.entrypoint = run.entrypoint.clone();
    }
    if run.working_dir.is_some() {
        body.working_dir = run.working_dir.clone();
    }
    body.user = run.user.clone();
    body.tty = run.tty.then_some(true);
    body.open_stdin = run.stdin_open.then_some(true);
    body.stop_signal = run.stop_signal.clone();
    body.stop_timeout = run
        .stop_grace_period
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    body.healthcheck = run.docker_health.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: h.interval.map(nanos),
        timeout: h.timeout.map(nanos),
        retries: h.retries,
        start_period: h.start_period.map(nanos),
        start_interval: h.start_interval.map(nanos),
    });
    // The file's labels first: previewd's own (its state) win over any of the same name.
    let ours = body.labels.take().unwrap_or_default();
    let mut all: HashMap<String, String> = run.labels.clone().into_iter().collect();
    all.extend(ours);
    body.labels = Some(all);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        crate::config::Config::from_parts(None, Path::new("t"), &[])
            .expect("defaults")
            .limits
    }

    #[test]
    fn a_bind_source_swapped_for_a_link_out_after_the_check_is_refused_at_mount_time() {
        let wt = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(wt.path().join("conf")).expect("mkdir");
        let run = Runtime {
            mounts: vec![Mount::Bind {
                source: "conf".into(),
                target: "/etc/app".into(),
                read_only: true,
            }],
            ..Default::default()
        };
        let inst = Instance::parse("pv").expect("instance");
        let id = PreviewId::parse("abcdefghij").expect("id");
        let ok = mounts(&inst, &id, &run, wt.path(), &limits()).expect("inside");
        assert_eq!(ok[0].read_only, Some(true));
        // A push replaced the folder by a link to the host's /etc.
        std::fs::remove_dir(wt.path().join("conf")).expect("rmdir");
        std::os::unix::fs::symlink("/etc", wt.path().join("conf")).expect("symlink");
        let e = mounts(&inst, &id, &run, wt.path(), &limits()).expect_err("outside");
        assert!(e.contains("outside the repository"), "{e}");
    }

    #[test]
    fn resources_are_clamped_to_the_operators_limits() {
        let l = limits();
        let mut run = Runtime::default();
        run.resources.memory = Some(l.memory * 4);
        run.resources.cpus = Some(l.cpus * 8.0);
        run.resources.shm_size = Some(l.memory * 2);
        run.ulimits.push(crate::spec::runtime::Ulimit {
            name: "nproc".into(),
            soft: l.pids * 10,
            hard: -1,
        });
        let mut body = ContainerCreateBody::default();
        apply(&mut body, &run, &l, false);
        let h = body.host_config.expect("host config");
        assert_eq!(h.memory, Some(l.memory));
        assert_eq!(h.nano_cpus, Some((l.cpus * 1e9) as i64));
        assert_eq!(h.shm_size, Some(l.memory));
        let u = &h.ulimits.expect("ulimits")[0];
        assert_eq!((u.soft, u.hard), (Some(l.pids), Some(l.pids)));
    }
}
