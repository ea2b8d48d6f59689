//! The gateway's route table, kept as empty files in a directory the gateway looks into on
//! every request, so that adding, updating or removing a preview never changes Caddy's config.
//!
//! Why not in the config: every Caddy config change is a full reload, and a reload's old server
//! closes the connections it has accepted but not yet read a request from (golang/go#75591) and,
//! listening with `SO_REUSEPORT`, resets those still in its accept queue. Measured against
//! Caddy 2.11 with a steady client on fresh connections: one to two failed requests per load,
//! so another preview's deployment could break a request to this one. Caddy's `file` matcher
//! reads this table instead (a directory listing per candidate, ~20 µs per request, whatever
//! the number of previews).
//!
//! Layout: a directory per host name, below it a directory per route segment, and in each
//! directory that is a route one empty file named `=<upstream>=<preview id>` (upstream empty:
//! the host is known but no service has that path). A request for `/api/users` on host `h`
//! tries `h/api/users/=*`, then `h/api/=*`, then `h/=*` ([`candidates`]): the longest route
//! that is a whole-segment prefix wins, as the route spec promises. `@tls` in a live host's
//! directory lets on-demand TLS get a certificate for it (`@` and `=` cannot occur in routes).
//! Hosts are lower case (browsers send them so); routes match case-sensitively, like most
//! proxies' path prefixes.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::preview::docker::labels::{self, Observed};

/// The deepest route the table can hold, in segments: what the repository's config may ask.
pub use crate::spec::MAX_SEGMENTS;

/// The name of the file that lets on-demand TLS certify a host.
pub const TLS_MARK: &str = "@tls";

/// The route table for `previews`: the relative paths of its files.
pub fn table(config: &Config, previews: &[Observed]) -> BTreeSet<PathBuf> {
    let domain = &config.gateway.domain;
    let mut files = BTreeSet::new();
    for p in previews {
        let live = p.live();
        for (g, members) in &p.generations {
            let staging = match live {
                Some(l) if *g == l => false,
                Some(l) if *g < l => continue, // retired: being removed
                _ => true,
            };
            // A host per member: the preview's, or the service's own.
            let mut by_host: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
            for m in members {
                let (Some(route), Some(port)) = (m.route.as_deref(), m.port) else {
                    continue;
                };
                let id = p.id.as_str();
                let host = match (m.own_host, staging) {
                    (false, false) => super::hosts::live_host(id, domain),
                    (false, true) => super::hosts::staging_host(id, *g, domain),
                    (true, false) => super::hosts::service_host(id, &m.service, domain),
                    (true, true) => super::hosts::staging_service_host(id, *g, &m.service, domain),
                };
                // Ids are lower case already; the configured domain may not be.
                let host = host.to_ascii_lowercase();
                let alias = labels::upstream_alias(&p.id, &m.service, m.generation);
                let mut dir = PathBuf::from(&host);
                dir.extend(route.split('/').filter(|s| !s.is_empty()));
                by_host
                    .entry(host)
                    .or_default()
                    .push(dir.join(format!("={alias}:{port}={}", p.id)));
            }
            for (host, mut own) in by_host {
                let host = PathBuf::from(host);
                if !own.iter().any(|f| f.parent() == Some(host.as_path())) {
                    // The host is known but no service has this path: a 404 that says so.
                    own.push(host.join(format!("=={}", p.id)));
                }
                if !staging {
                    own.push(host.join(TLS_MARK));
                }
                files.extend(own);
            }
        }
    }
    files
}

/// What ends the entry of a sleeping preview's service: the gateway then asks previewd to wake
/// the preview before it proxies (the wake route in `caddy.rs`). Neither ids nor upstreams
/// hold it.
pub const ASLEEP: &str = "~";

/// `table` with the entries of every sleeping preview's live generation marked [`ASLEEP`].
/// Only those: a generation being deployed beside a sleeping one (a push) is awake, and a
/// host that is known but has no service at a path answers its 404 without a wake.
pub fn mark_asleep(table: BTreeSet<PathBuf>, previews: &[Observed]) -> BTreeSet<PathBuf> {
    let mut names = BTreeSet::new();
    for p in previews.iter().filter(|p| p.asleep.is_some()) {
        for m in p.live_members() {
            if let (Some(_), Some(port)) = (&m.route, m.port) {
                let alias = labels::upstream_alias(&p.id, &m.service, m.generation);
                names.insert(format!("={alias}:{port}={}", p.id));
            }
        }
    }
    if names.is_empty() {
        return table;
    }
    table
        .into_iter()
        .map(|f| match f.file_name().and_then(|n| n.to_str()) {
            Some(n) if names.contains(n) => f.with_file_name(format!("{n}{ASLEEP}")),
            _ => f,
        })
        .collect()
}

/// What ends the entry of a preview whose `dev.previewd.access` label protects it (after
/// [`ASLEEP`] when both): when the operator's settings alone protect no preview, the gateway
/// asks previewd only about the requests to entries with this mark.
pub const PROTECTED: &str = "!";

/// `table` with every entry of a preview labelled `password` or `forge` marked [`PROTECTED`].
pub fn mark_protected(table: BTreeSet<PathBuf>, previews: &[Observed]) -> BTreeSet<PathBuf> {
    let ids: BTreeSet<&str> = previews
        .iter()
        .filter(|p| {
            p.generations.values().flatten().any(|m| {
                m.access
                    .is_some_and(|a| a != crate::config::AccessMode::Public)
            })
        })
        .map(|p| p.id.as_str())
        .collect();
    if ids.is_empty() {
        return table;
    }
    table
        .into_iter()
        .map(|f| match f.file_name().and_then(|n| n.to_str()) {
            Some(n)
                if n.starts_with('=')
                    && n.rsplit('=')
                        .next()
                        .is_some_and(|id| ids.contains(id.trim_end_matches(ASLEEP))) =>
            {
                f.with_file_name(format!("{n}{PROTECTED}"))
            }
            _ => f,
        })
        .collect()
}

/// The `file` matcher's `try_files`, deepest first: the host, then up to [`MAX_SEGMENTS`]
/// segments of the request path. Caddy escapes glob characters in placeholders, cleans the
/// joined path and keeps it inside the root, so a request cannot name a file of its choice.
pub fn candidates() -> Vec<String> {
    (0..=MAX_SEGMENTS)
        .rev()
        .map(|depth| {
            let mut c = String::from("/{http.request.host}");
            for i in 0..depth {
                c.push_str(&format!("/{{http.request.uri.path.{i}}}"));
            }
            c.push_str("/=*");
            c
        })
        .collect()
}

/// Brings the directory `root` in line with `wanted`: new files first, then stale ones go, so
/// that a host switching generations has its old entry or its new one at every instant, never
/// neither. Directories emptied by the removals go too. One walk of the tree, then only the
/// differences: this runs on every deploy, with every preview's entries in the tree.
pub fn write(root: &Path, wanted: &BTreeSet<PathBuf>) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    let mut present = BTreeSet::new();
    walk(root, Path::new(""), &mut present)?;
    for f in wanted.difference(&present) {
        let path = root.join(f);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::File::create(&path)?;
    }
    let mut emptied = BTreeSet::new();
    for f in present.difference(wanted) {
        match std::fs::remove_file(root.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        emptied.extend(f.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()));
    }
    // Deepest first; a directory that still holds something (or that another previewd process
    // just gave an entry) stays.
    for dir in emptied.iter().rev() {
        let _ = std::fs::remove_dir(root.join(dir));
    }
    Ok(())
}

/// Every file below `root.join(rel)`, relative to `root`. A directory that another previewd
/// process (the CLI beside `serve`) removes meanwhile is simply not there.
fn walk(root: &Path, rel: &Path, out: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(root.join(rel)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.insert(path);
        }
    }
    Ok(())
}

/// What the gateway answers for `host` and `path` given `table`, found the way Caddy's `file`
/// matcher finds it: `Some((upstream, preview id))`, the upstream empty where the host is known
/// but no service has the path; `None` for an unknown host. The tests' model of the gateway.
#[cfg(test)]
pub(crate) fn lookup(
    table: &BTreeSet<PathBuf>,
    host: &str,
    path: &str,
) -> Option<(String, String)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for depth in (0..=MAX_SEGMENTS.min(segments.len())).rev() {
        let mut dir = PathBuf::from(host);
        dir.extend(&segments[..depth]);
        let hit = table.iter().find_map(|f| {
            let name = f.file_name()?.to_str()?;
            (f.parent() == Some(dir.as_path()) && name.starts_with('=')).then_some(name)
        });
        if let Some(name) = hit {
            let mut parts = name[1..].splitn(2, '=');
            let upstream = parts.next().unwrap_or_default().to_owned();
            let id = parts.next().unwrap_or_default();
            let id = id.trim_end_matches(PROTECTED).trim_end_matches(ASLEEP);
            return Some((upstream, id.to_owned()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_adds_before_it_removes_and_prunes_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("routes");
        let a: BTreeSet<PathBuf> = ["h/=x-web-1:80=x", "h/api/v2/=x-v2-1:80=x", "h/@tls"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        write(&root, &a).unwrap();
        assert!(root.join("h/api/v2/=x-v2-1:80=x").is_file());
        let b: BTreeSet<PathBuf> = ["h/=x-web-2:80=x"].into_iter().map(PathBuf::from).collect();
        write(&root, &b).unwrap();
        let mut left = BTreeSet::new();
        walk(&root, Path::new(""), &mut left).unwrap();
        assert_eq!(left, b);
        assert!(!root.join("h/api").exists(), "empty directories are pruned");
        write(&root, &BTreeSet::new()).unwrap();
        assert!(root.is_dir() && std::fs::read_dir(&root).unwrap().next().is_none());
    }

    #[test]
    fn candidates_go_from_the_deepest_prefix_to_the_host() {
        let c = candidates();
        assert_eq!(c.len(), MAX_SEGMENTS + 1);
        assert_eq!(c.last().unwrap(), "/{http.request.host}/=*");
        assert!(c[0].ends_with(&format!(
            "/{{http.request.uri.path.{}}}/=*",
            MAX_SEGMENTS - 1
        )));
    }
}
