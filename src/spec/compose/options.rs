//! The container options compose passes through to Docker, checked one by one: restart
//! policy, init, tty, user, signals, sizes and resources (the manager clamps them to the
//! operator's limits), ulimits, sysctls of the namespaced safe set, `/etc/hosts` entries and
//! name servers (`dns`) that do not point at the host, Docker's health check, platform and pull
//! policy. Nothing here may
//! let a value reach the host: what would is refused naming the key.

use std::net::IpAddr;
use std::time::Duration;

use yaml_serde::Value;

use super::project::{invalid, labels, refused};
use super::shape::{ComposeHealth, RawService};
use super::storage::size;
use super::words::split_words;
use crate::spec::SpecError;
use crate::spec::raw::{Command, Text};
use crate::spec::runtime::{DockerHealth, PullPolicy, Restart, Runtime, Ulimit};
use crate::spec::yaml::{clip, join};

/// Sysctls that are namespaced per container and safe to set (the set Kubernetes calls safe).
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Ulimits a preview may set; `nproc` is clamped to the operator's PID limit, the sizes to
/// its memory limit, by the manager.
const ULIMITS: [&str; 5] = ["nofile", "nproc", "core", "memlock", "stack"];

pub(super) fn duration(file: &str, key: &str, text: &str) -> Result<Duration, SpecError> {
    // Compose writes Go durations (`1m30s`, `10s`, `500ms`), which humantime reads.
    humantime::parse_duration(text).map_err(|e| {
        invalid(
            file,
            key.to_owned(),
            format!(
                "`{}` is not a duration like `10s` or `1m30s`: {e}",
                clip(text)
            ),
        )
    })
}

/// Everything of `raw` that only compose can say about running it, but mounts, networks and
/// names (`draft` and `storage` read those).
pub(super) fn runtime(
    file: &str,
    prefix: &str,
    raw: &mut RawService,
    run: &mut Runtime,
    problems: &mut Vec<SpecError>,
) {
    let key = |k: &str| join(prefix, k);
    let mut push = |r: Result<(), SpecError>| {
        if let Err(e) = r {
            problems.push(e);
        }
    };
    if let Some(ep) = raw.entrypoint.take() {
        run.entrypoint = Some(match ep {
            Command::Exec(args) => args,
            Command::Line(line) => match split_words(&line) {
                Ok(w) => w,
                Err(reason) => {
                    push(Err(invalid(file, key("entrypoint"), reason)));
                    Vec::new()
                }
            },
        });
    }
    if let Some(r) = raw.restart.take() {
        match restart(&r) {
            Some(policy) => run.restart = Some(policy),
            None => push(Err(invalid(
                file,
                key("restart"),
                format!(
                    "`{}`: use no, always, on-failure[:N] or unless-stopped",
                    clip(&r)
                ),
            ))),
        }
    }
    run.init = raw.init;
    run.tty = raw.tty.unwrap_or(false);
    run.stdin_open = raw.stdin_open.unwrap_or(false);
    run.read_only = raw.read_only.unwrap_or(false);
    if let Some(wd) = raw.working_dir.take() {
        push(
            super::storage::check_target(file, &key("working_dir"), &wd)
                .or_else(|e| if wd == "/" { Ok(()) } else { Err(e) }),
        );
        run.working_dir = Some(wd);
    }
    run.user = raw.user.take().map(|t| t.0);
    run.group_add = raw
        .group_add
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.0)
        .collect();
    run.stop_signal = raw.stop_signal.take();
    if let Some(g) = raw.stop_grace_period.take() {
        match duration(file, &key("stop_grace_period"), &g) {
            Ok(d) => run.stop_grace_period = Some(d),
            Err(e) => problems.push(e),
        }
    }
    let mut sized = |k: &str, v: Option<Text>| -> Option<i64> {
        let v = v?;
        match size(file, &key(k), &v.0) {
            Ok(b) => Some(b),
            Err(e) => {
                problems.push(e);
                None
            }
        }
    };
    run.resources.shm_size = sized("shm_size", raw.shm_size.take());
    run.resources.memory = sized("mem_limit", raw.mem_limit.take());
    run.resources.memory_reservation = sized("mem_reservation", raw.mem_reservation.take());
    if sized("memswap_limit", raw.memswap_limit.take()).is_some() {
        run.changes
            .push("memswap_limit: previews get no swap beyond the operator's memory limit".into());
    }
    if let Some(c) = raw.cpus.take() {
        run.resources.cpus = cpus(file, &key("cpus"), &c.0, problems);
    }
    run.resources.pids = raw.pids_limit.take();
    if let Some(u) = raw.ulimits.take() {
        ulimits(file, &key("ulimits"), u, run, problems);
    }
    if let Some(h) = raw.healthcheck.take() {
        match health(file, &key("healthcheck"), h) {
            Ok(h) => run.docker_health = h,
            Err(e) => problems.push(e),
        }
    }
    run.platform = raw.platform.take();
    if let Some(p) = raw.pull_policy.take() {
        run.pull = match p.as_str() {
            "missing" | "if_not_present" | "build" => PullPolicy::Missing,
            "always" => PullPolicy::Always,
            "daily" => PullPolicy::Refresh(Duration::from_secs(24 * 3600)),
            "weekly" => PullPolicy::Refresh(Duration::from_secs(7 * 24 * 3600)),
            "never" => PullPolicy::Never,
            _ => match p.strip_prefix("every_").map(humantime::parse_duration) {
                Some(Ok(d)) if !d.is_zero() => PullPolicy::Refresh(d),
                _ => {
                    problems.push(invalid(
                        file,
                        key("pull_policy"),
                        format!(
                            "`{}`: use always, never, missing, build, daily, weekly or \
                             every_<duration> (every_12h)",
                            clip(&p)
                        ),
                    ));
                    PullPolicy::Missing
                }
            },
        };
    }
    run.labels = labels(file, &key("labels"), raw.labels.take(), problems);
    run.cap_drop = raw.cap_drop.take().unwrap_or_default();
    for (name, value) in raw.sysctls.take().map(|v| v.0).unwrap_or_default() {
        if SAFE_SYSCTLS.contains(&name.as_str()) {
            run.sysctls.insert(name, value.unwrap_or_default());
        } else {
            problems.push(refused(
                file,
                join(&key("sysctls"), &clip(&name)),
                format!(
                    "only the namespaced safe sysctls may be set ({})",
                    SAFE_SYSCTLS.join(", ")
                ),
            ));
        }
    }
    if let Some(h) = raw.extra_hosts.take() {
        extra_hosts(file, &key("extra_hosts"), h, run, problems);
    }
    super::dns::dns(file, prefix, raw, run, problems);
    if let Some(n) = raw.scale.take().filter(|n| *n != 1) {
        problems.push(invalid(
            file,
            key("scale"),
            format!("{n}: a preview runs one container per service; use 1"),
        ));
    }
    if let Some(adj) = raw.oom_score_adj.take().filter(|a| *a < 0) {
        problems.push(refused(
            file,
            key("oom_score_adj"),
            format!("{adj}: a preview may not ask to be killed after the host's own processes"),
        ));
    }
    if let Some(r) = raw.runtime.take().filter(|r| r != "runc") {
        problems.push(refused(
            file,
            key("runtime"),
            format!(
                "`{}`: the runtimes of a host are the operator's (one may hand out GPUs or \
                 run nested containers); previews run under Docker's default, `runc`",
                clip(&r)
            ),
        ));
    }
    if raw.domainname.take().is_some() {
        run.changes
            .push("domainname: not set; the container keeps Docker's".to_owned());
    }
}

fn restart(r: &str) -> Option<Restart> {
    Some(match r {
        "no" | "\"no\"" => Restart::No,
        "always" => Restart::Always,
        "unless-stopped" => Restart::UnlessStopped,
        "on-failure" => Restart::OnFailure(None),
        _ => Restart::OnFailure(Some(r.strip_prefix("on-failure:")?.parse().ok()?)),
    })
}

pub(super) fn cpus(
    file: &str,
    key: &str,
    text: &str,
    problems: &mut Vec<SpecError>,
) -> Option<f64> {
    match text.trim().parse::<f64>() {
        Ok(c) if c > 0.0 && c.is_finite() => Some(c),
        _ => {
            problems.push(invalid(
                file,
                key.to_owned(),
                format!("`{}` is not a number of CPUs like `0.5`", clip(text)),
            ));
            None
        }
    }
}

fn ulimits(
    file: &str,
    key: &str,
    u: std::collections::BTreeMap<String, Value>,
    run: &mut Runtime,
    problems: &mut Vec<SpecError>,
) {
    for (name, v) in u {
        let k = join(key, &clip(&name));
        if !ULIMITS.contains(&name.as_str()) {
            problems.push(refused(
                file,
                k,
                format!(
                    "previews may set only these ulimits: {}",
                    ULIMITS.join(", ")
                ),
            ));
            continue;
        }
        let (soft, hard) = match &v {
            Value::Number(n) => (n.as_i64(), n.as_i64()),
            Value::Mapping(m) => (
                m.get("soft").and_then(Value::as_i64),
                m.get("hard").and_then(Value::as_i64),
            ),
            _ => (None, None),
        };
        match (soft, hard) {
            (Some(soft), Some(hard)) if soft <= hard && soft >= -1 => {
                run.ulimits.push(Ulimit { name, soft, hard })
            }
            _ => problems.push(invalid(
                file,
                k,
                "must be a number or {soft, hard} with soft <= hard",
            )),
        }
    }
}

fn extra_hosts(file: &str, key: &str, v: Value, run: &mut Runtime, problems: &mut Vec<SpecError>) {
    let entries: Vec<(String, String)> = match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| {
                let (h, ip) = s.split_once('=').or_else(|| s.split_once(':'))?;
                Some((h.to_owned(), ip.trim_matches(['[', ']']).to_owned()))
            })
            .collect(),
        Value::Mapping(m) => m
            .iter()
            .filter_map(|(h, ip)| Some((h.as_str()?.to_owned(), ip.as_str()?.to_owned())))
            .collect(),
        _ => Vec::new(),
    };
    for (host, ip) in entries {
        let k = join(key, &clip(&host));
        let addr = ip.parse::<IpAddr>();
        if towards_host(&ip) {
            problems.push(refused(
                file,
                k,
                format!(
                    "`{}` points at the host; previews do not reach the host",
                    clip(&ip)
                ),
            ));
        } else if addr.is_err() {
            problems.push(invalid(
                file,
                k,
                format!("`{}` is not an IP address", clip(&ip)),
            ));
        } else {
            run.extra_hosts.push(format!("{host}:{ip}"));
        }
    }
}

/// An address that reaches the host rather than the internet or the preview's own network.
pub(super) fn towards_host(ip: &str) -> bool {
    ip == "host-gateway" || ip.parse::<IpAddr>().is_ok_and(|a| {
        a.is_loopback()
            || a.is_unspecified()
            || matches!(a, IpAddr::V4(v4) if v4.is_link_local() || v4.octets()[..2] == [172, 17])
    })
}

fn health(file: &str, key: &str, h: ComposeHealth) -> Result<Option<DockerHealth>, SpecError> {
    if h.disable == Some(true) {
        return Ok(Some(DockerHealth {
            test: vec!["NONE".to_owned()],
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
            start_interval: None,
        }));
    }
    let test = match h.test {
        None => return Ok(None),
        Some(Command::Line(line)) => vec!["CMD-SHELL".to_owned(), line],
        Some(Command::Exec(args)) => match args.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL" | "NONE") => args,
            _ => {
                return Err(invalid(
                    file,
                    join(key, "test"),
                    "a list must start with CMD, CMD-SHELL or NONE",
                ));
            }
        },
    };
    let d = |k: &str, v: Option<String>| -> Result<Option<Duration>, SpecError> {
        v.map(|t| duration(file, &join(key, k), &t)).transpose()
    };
    Ok(Some(DockerHealth {
        test,
        interval: d("interval", h.interval)?,
        timeout: d("timeout", h.timeout)?,
        retries: h.retries.map(|r| r.min(i64::MAX as u64) as i64),
        start_period: d("start_period", h.start_period)?,
        start_interval: d("start_interval", h.start_interval)?,
    }))
}
