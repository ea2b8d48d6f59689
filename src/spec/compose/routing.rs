//! Which host each routed compose service answers at. A service with `x-previewd.route` is on
//! the preview's host at that route. Without any, the preview's host goes to the one service
//! that publishes a port, or among several to the first of [`PREFERRED`] that does, else to
//! the first of them in the file (noted for `check`); every other routed service gets a host
//! of its own, `<id>-<service>.<domain>`, at `/`. Nothing here checks routes themselves
//! (`validate` does) or may refuse a file for lack of a choice compose does not ask for.

use crate::spec::SpecError;
use crate::spec::runtime::Host;
use crate::spec::validate::Draft;
use crate::spec::yaml::{clip, join};

/// The service names that get the preview's host when several publish ports, in this order.
pub const PREFERRED: [&str; 5] = ["web", "frontend", "app", "proxy", "nginx"];

pub(super) fn assign_hosts(file: &str, drafts: &mut [Draft], problems: &mut Vec<SpecError>) {
    let routed = |d: &Draft| !d.internal;
    let on_preview_host = drafts.iter().any(|d| routed(d) && d.route.is_some());
    let candidates: Vec<usize> = drafts
        .iter()
        .enumerate()
        .filter(|(_, d)| routed(d) && d.route.is_none())
        .map(|(i, _)| i)
        .collect();
    let main = if on_preview_host {
        None
    } else {
        match candidates.as_slice() {
            [] => None,
            [one] => Some(*one),
            several => {
                let preferred = PREFERRED
                    .iter()
                    .find_map(|want| several.iter().copied().find(|i| drafts[*i].name == *want));
                // None of the usual names: the first in the file, as a reader of it would
                // guess, and `check` says so (a wrong pick is one `x-previewd` line away,
                // not a refusal of a file compose runs).
                let pick = preferred.unwrap_or(several[0]);
                if preferred.is_none() {
                    let names: Vec<String> =
                        several.iter().map(|i| clip(&drafts[*i].name)).collect();
                    drafts[pick].run.changes.push(format!(
                        "gets the preview's host: the first in the file of {}, which publish ports \
                         (none is called {}; choose another with `x-previewd: {{route: /}}`)",
                        names.join(", "),
                        PREFERRED.join(", ")
                    ));
                }
                Some(pick)
            }
        }
    };
    for i in candidates {
        if Some(i) == main {
            continue;
        }
        let d = &mut drafts[i];
        if d.name.starts_with(|c: char| c.is_ascii_digit()) {
            // `<id>-<digits>` is a generation's staging host.
            problems.push(SpecError::Invalid {
                file: file.to_owned(),
                key: join("services", &clip(&d.name)),
                reason: "a service on a host of its own needs a name that starts with a \
                         letter (its host is `<id>-<service>`)"
                    .to_owned(),
            });
            continue;
        }
        d.host = Host::Service;
        d.route = Some("/".to_owned());
        d.run.changes.push(format!(
            "routed at a host of its own, <id>-{}.<domain>",
            d.name
        ));
    }
}
