//! A service's resolver settings: `dns` (name servers, which must be IP addresses that do not
//! reach the host), `dns_search` (domain names) and `dns_opt` (resolv.conf options of a safe
//! set). On a preview's own networks Docker's embedded resolver still answers the project's
//! names first and forwards the rest to these servers from the container, so the egress policy
//! applies to them as to any other traffic. Nothing here may point a preview at the host.

use yaml_serde::Value;

use super::options::towards_host;
use super::project::{invalid, refused};
use super::shape::RawService;
use crate::spec::SpecError;
use crate::spec::runtime::Runtime;
use crate::spec::yaml::{clip, join};

/// resolv.conf options a preview may set (each may take `:N` where it has a value).
const OPTIONS: [&str; 11] = [
    "ndots",
    "timeout",
    "attempts",
    "rotate",
    "edns0",
    "single-request",
    "single-request-reopen",
    "no-tld-query",
    "use-vc",
    "inet6",
    "trust-ad",
];

/// Reads `dns`, `dns_search` and `dns_opt` of `raw` into `run`.
pub(super) fn dns(
    file: &str,
    prefix: &str,
    raw: &mut RawService,
    run: &mut Runtime,
    problems: &mut Vec<SpecError>,
) {
    let key = |k: &str| join(prefix, k);
    for (i, ip) in one_or_many(file, &key("dns"), raw.dns.take(), problems)
        .into_iter()
        .enumerate()
    {
        let k = format!("{}[{i}]", key("dns"));
        if towards_host(&ip) {
            problems.push(refused(
                file,
                k,
                format!(
                    "`{}` points at the host; previews do not reach the host",
                    clip(&ip)
                ),
            ));
        } else if ip.parse::<std::net::IpAddr>().is_err() {
            problems.push(invalid(
                file,
                k,
                format!("`{}` is not an IP address", clip(&ip)),
            ));
        } else {
            run.dns.push(ip);
        }
    }
    for (i, d) in one_or_many(file, &key("dns_search"), raw.dns_search.take(), problems)
        .into_iter()
        .enumerate()
    {
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if ok {
            run.dns_search.push(d);
        } else {
            problems.push(invalid(
                file,
                format!("{}[{i}]", key("dns_search")),
                format!("`{}` is not a domain name", clip(&d)),
            ));
        }
    }
    for (i, o) in raw
        .dns_opt
        .take()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let (name, value) = o.split_once(':').unwrap_or((o.as_str(), ""));
        let ok = OPTIONS.contains(&name)
            && (value.is_empty()
                || (value.len() <= 2 && value.chars().all(|c| c.is_ascii_digit())));
        if ok {
            run.dns_opt.push(o);
        } else {
            problems.push(invalid(
                file,
                format!("{}[{i}]", key("dns_opt")),
                format!(
                    "`{}`: use resolver options like `ndots:2` ({})",
                    clip(&o),
                    OPTIONS.join(", ")
                ),
            ));
        }
    }
}

/// A string or a list of strings.
pub(super) fn one_or_many(
    file: &str,
    key: &str,
    v: Option<Value>,
    problems: &mut Vec<SpecError>,
) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Sequence(items)) if items.iter().all(Value::is_string) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            problems.push(invalid(
                file,
                key.to_owned(),
                "must be a string or a list of strings",
            ));
            Vec::new()
        }
    }
}
