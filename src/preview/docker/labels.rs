//! Docker labels and names: previewd's only state. Every object previewd creates is named and
//! labelled here, and everything previewd knows about a preview after a restart is parsed back
//! from these labels. Nothing here calls Docker.
//!
//! A preview's containers come in generations. The live generation's containers have the
//! canonical names `<instance>-<id>-<service>`; a generation being prepared (or one that never
//! finished) has names ending in `.g<generation>`. Renaming is the commit point of an update,
//! so the live generation is always readable from Docker alone, also across processes.

use std::collections::{BTreeMap, HashMap};

use crate::engine::PreviewKey;
use crate::forge::{ForgeKind, Repo};
use crate::ids::{CommitSha, Instance, PreviewId};

pub const PREFIX: &str = "dev.previewd.";
pub const INSTANCE: &str = "dev.previewd.instance";
pub const ROLE: &str = "dev.previewd.role";
pub const PREVIEW: &str = "dev.previewd.preview";
pub const SERVICE: &str = "dev.previewd.service";
pub const REPO: &str = "dev.previewd.repo";
pub const BRANCH: &str = "dev.previewd.branch";
pub const SHA: &str = "dev.previewd.sha";
pub const PR: &str = "dev.previewd.pr";
pub const MODE: &str = "dev.previewd.mode";
pub const ROUTE: &str = "dev.previewd.route";
pub const PORT: &str = "dev.previewd.port";
pub const GENERATION: &str = "dev.previewd.generation";
pub const CREATED: &str = "dev.previewd.created";
pub const FORGE: &str = "dev.previewd.forge";
/// On the gateway: a hash of the settings it was made with (image, bind, ports, TLS mode).
pub const GATEWAY_SETTINGS: &str = "dev.previewd.gateway-settings";
/// On containers: the expected health path and status (`/api/health 200`).
pub const HEALTH: &str = "dev.previewd.health";
/// On containers: the project networks joined, comma-separated (absent: the default one).
pub const NETWORKS: &str = "dev.previewd.networks";
/// On containers: the named volumes mounted, comma-separated; on volumes: the volume's name
/// in the compose file.
pub const VOLUMES: &str = "dev.previewd.volumes";
/// On containers: `service` when the service answers at a host of its own.
pub const HOST: &str = "dev.previewd.host";
/// On containers: `true` for a job others wait to complete, whose exit is not a failure.
pub const ONESHOT: &str = "dev.previewd.oneshot";
/// On preview networks and containers: the egress mode (`none`, `public`, `all`) the
/// preview runs with; the firewall's rules are rebuilt from it on networks.
pub const EGRESS: &str = "dev.previewd.egress";
/// On containers: who may see the preview (`public`, `password`, `forge`), the operator's
/// `access.mode` as the repository's `.previewd.yml` tightened it when it was deployed;
/// absent when neither said. The edge never opens a preview wider than it says.
pub const ACCESS: &str = "dev.previewd.access";
/// On containers: the service's lifecycle hooks as JSON (`docker::hooks`; absent: none).
pub const HOOKS: &str = "dev.previewd.hooks";
/// On a project network: its name in the compose file.
pub const NETWORK: &str = "dev.previewd.network";
pub const ROLE_VOLUME: &str = "volume";

pub const ROLE_GATEWAY: &str = "gateway";
pub const ROLE_SERVICE: &str = "service";
/// A sleep mark: a container that is created, never started, and says that a preview's
/// generation was stopped on purpose (see [`super::sleep`]).
pub const ROLE_SLEEP: &str = "sleep";
/// On a sleep mark: when the preview went to sleep (RFC 3339).
pub const SLEEPING: &str = "dev.previewd.sleeping";
/// A ready mark: a container that is created, never started, and keeps how long a preview's
/// live generation took to be ready (see [`super::ready`]).
pub const ROLE_READY: &str = "ready";
/// On a ready mark: the time to ready, in milliseconds.
pub const READY_IN: &str = "dev.previewd.ready-in-ms";
/// On containers: `never` when the repository's config keeps the preview awake.
pub const SLEEP: &str = "dev.previewd.sleep";
/// On containers: what the service waits for before it starts, `service:condition` pairs
/// (`db:healthy,api:started`), so a wake starts services in the order a deployment did.
pub const DEPENDS: &str = "dev.previewd.depends";

/// On Swarm services (`cluster.engine = "swarm"`): `true` once the service's generation was
/// switched live. A service cannot be renamed, so on a swarm this label, set in the switch, is
/// what the canonical container name is on one host.
pub const LIVE: &str = "dev.previewd.live";

pub fn gateway_name(instance: &Instance) -> String {
    format!("{instance}-gateway")
}

/// The canonical (live) name of a service container.
pub fn container_name(instance: &Instance, id: &PreviewId, service: &str) -> String {
    format!("{instance}-{id}-{service}")
}

/// The name of a service container of a generation that is not (yet) live.
pub fn staging_name(instance: &Instance, id: &PreviewId, service: &str, generation: u64) -> String {
    format!("{instance}-{id}-{service}.g{generation}")
}

/// The name of a service's Swarm service in a generation. Swarm names are DNS labels (no `.`)
/// and never change, so every generation's carries its number, live or not.
pub fn swarm_service_name(
    instance: &Instance,
    id: &PreviewId,
    service: &str,
    generation: u64,
) -> String {
    format!("{instance}-{id}-{service}-g{generation}")
}

/// The name of a preview's sleep mark. `.` cannot occur in a service name, so it never meets
/// a service container's name.
pub fn sleep_mark_name(instance: &Instance, id: &PreviewId) -> String {
    format!("{instance}-{id}.sleep")
}

/// The name of a preview's ready mark (one per preview, for its live generation).
pub fn ready_mark_name(instance: &Instance, id: &PreviewId) -> String {
    format!("{instance}-{id}.ready")
}

/// Each generation has its own network, so a new generation's services never talk to the old
/// one's while both run during an update. The `pv-` prefix sorts after `bridge`, whatever the
/// instance is called: Docker puts a container's published ports on the first of its
/// networks *by name*, so a gateway joining `acme-<id>-2` (before `bridge`) had its port moved
/// there and back on every update, refusing every preview's connections for ~100 ms.
pub fn network_name(instance: &Instance, id: &PreviewId, generation: u64) -> String {
    format!("{}{id}-{generation}", network_prefix(instance))
}

/// A project network of a generation: the generation's network name and the compose name.
/// The compose default network is the generation's network itself.
pub fn project_network_name(
    instance: &Instance,
    id: &PreviewId,
    generation: u64,
    network: &str,
) -> String {
    if network == crate::spec::runtime::DEFAULT_NETWORK {
        network_name(instance, id, generation)
    } else {
        format!("{}-{network}", network_name(instance, id, generation))
    }
}

/// A preview's named volume: one per preview and compose volume name, kept across updates.
pub fn volume_name(instance: &Instance, id: &PreviewId, volume: &str) -> String {
    format!("{instance}-{id}-{volume}")
}

/// What every preview network of `instance` is named with first.
pub fn network_prefix(instance: &Instance) -> String {
    format!("pv-{instance}-")
}

/// The DNS name the gateway dials: stable across the commit rename, unique per generation.
pub fn upstream_alias(id: &PreviewId, service: &str, generation: u64) -> String {
    format!("{id}-{service}-{generation}")
}

/// Image tag for a service's build: `<instance>-<id>-<service>:<content hash>`. The tag, not a
/// label, carries the content hash (64 hex digits, a valid tag): Docker's classic builder adds
/// a build step per image label, ~1 s each on this host, so an image has only `instance`.
pub fn image_tag(instance: &Instance, id: &PreviewId, service: &str, hash: &str) -> String {
    format!("{instance}-{id}-{service}:{hash}")
}

/// A Docker `reference` filter for the images of `instance` built from content `hash`, whatever
/// the preview and service (an unchanged service reuses another preview's image). Instance,
/// preview id and service name hold no glob characters, and the hash is hex; the `instance`
/// label filter beside it keeps `a-*` from finding the images of an instance named `a-b`.
pub fn image_pattern(instance: &Instance, hash: &str) -> String {
    format!("{instance}-*:{hash}")
}

/// One service container of a preview, as read back from its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub container_id: String,
    pub name: String,
    pub preview: PreviewId,
    pub service: String,
    pub generation: u64,
    pub repo: String,
    pub branch: String,
    pub sha: Option<String>,
    pub pr: Option<u64>,
    pub mode: String,
    pub route: Option<String>,
    pub port: Option<u16>,
    pub created: String,
    pub forge: String,
    pub health: Option<(String, u16)>,
    /// Docker's state: `running`, `exited`, `created`, `restarting`, ...
    pub state: String,
    pub image: String,
    /// `true` when the container has its canonical name: its generation is (or was) live.
    pub canonical: bool,
    /// The compose networks it joined (`default` when the label is absent).
    pub networks: Vec<String>,
    /// The named volumes it mounts (compose names).
    pub volumes: Vec<String>,
    /// It answers at a host of its own, `<id>-<service>`.
    pub own_host: bool,
    /// A job that others wait to complete: exited is its healthy end.
    pub oneshot: bool,
    /// What it waits for and how ([`DEPENDS`]), as written; `None` when it waits for nothing.
    pub depends: Option<String>,
    /// The egress mode it runs with (`None`: made before previewd filtered egress).
    pub egress: Option<crate::config::egress::Mode>,
    /// Who may see the preview, at least (`None`: no label, see [`ACCESS`]).
    pub access: Option<crate::config::AccessMode>,
    /// Its lifecycle hooks, as the [`HOOKS`] label holds them.
    pub hooks: Option<String>,
}

impl Member {
    /// The Docker names of the networks it joined.
    pub fn network_names(&self, instance: &Instance) -> Vec<String> {
        self.networks
            .iter()
            .map(|n| project_network_name(instance, &self.preview, self.generation, n))
            .collect()
    }
}

fn list(labels: &HashMap<String, String>, key: &str) -> Vec<String> {
    labels
        .get(key)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Member {
    /// Whether this container belongs to the preview of `key`: the same forge, repository
    /// and branch (one `owner/name` on two forges is two previews).
    pub fn is_for(&self, key: &PreviewKey) -> bool {
        self.forge == key.forge && self.repo == key.repo && self.branch == key.branch
    }
}

/// Parses a container's labels; `None` when it is not a service container of `instance`.
pub fn parse_member(
    instance: &Instance,
    container_id: &str,
    names: &[String],
    labels: &HashMap<String, String>,
    state: &str,
    image: &str,
) -> Option<Member> {
    if labels.get(INSTANCE).map(String::as_str) != Some(instance.as_str())
        || labels.get(ROLE).map(String::as_str) != Some(ROLE_SERVICE)
    {
        return None;
    }
    let preview = PreviewId::parse(labels.get(PREVIEW)?).ok()?;
    let service = labels.get(SERVICE)?.clone();
    let generation = labels.get(GENERATION)?.parse().ok()?;
    let name = names
        .first()
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default();
    let canonical = name == container_name(instance, &preview, &service);
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    Some(Member {
        container_id: container_id.to_owned(),
        name,
        preview,
        service,
        generation,
        repo: get(REPO),
        branch: get(BRANCH),
        sha: labels.get(SHA).filter(|s| !s.is_empty()).cloned(),
        pr: labels.get(PR).and_then(|p| p.parse().ok()),
        mode: get(MODE),
        route: labels.get(ROUTE).filter(|s| !s.is_empty()).cloned(),
        port: labels.get(PORT).and_then(|p| p.parse().ok()),
        created: get(CREATED),
        forge: get(FORGE),
        health: labels.get(HEALTH).and_then(|h| {
            let (path, status) = h.rsplit_once(' ')?;
            Some((path.to_owned(), status.parse().ok()?))
        }),
        state: state.to_owned(),
        image: image.to_owned(),
        canonical,
        networks: {
            let n = list(labels, NETWORKS);
            if n.is_empty() {
                vec![crate::spec::runtime::DEFAULT_NETWORK.to_owned()]
            } else {
                n
            }
        },
        volumes: list(labels, VOLUMES),
        own_host: labels.get(HOST).map(String::as_str) == Some("service"),
        oneshot: labels.get(ONESHOT).map(String::as_str) == Some("true"),
        depends: labels.get(DEPENDS).filter(|s| !s.is_empty()).cloned(),
        egress: labels.get(EGRESS).and_then(|m| m.parse().ok()),
        // An unreadable value counts as the tightest: protected rather than open.
        access: labels.get(ACCESS).map(|m| {
            crate::config::AccessMode::parse(m).unwrap_or(crate::config::AccessMode::Forge)
        }),
        hooks: labels.get(HOOKS).cloned(),
    })
}

/// A preview as Docker shows it: its members grouped by generation.
#[derive(Debug, Clone)]
pub struct Observed {
    pub id: PreviewId,
    pub generations: BTreeMap<u64, Vec<Member>>,
    /// When its live generation went to sleep (RFC 3339): a sleep mark for that generation
    /// exists. `None` when awake, and when [`group`] alone built it (marks are listed apart).
    pub asleep: Option<String>,
    /// How long its live generation took to be ready: a ready mark for that generation
    /// exists. `None` when none does, and when [`group`] alone built it.
    pub ready_in: Option<std::time::Duration>,
}

impl Observed {
    /// The live generation: the newest one that has a container with its canonical name.
    pub fn live(&self) -> Option<u64> {
        self.generations
            .iter()
            .rev()
            .find(|(_, ms)| ms.iter().any(|m| m.canonical))
            .map(|(g, _)| *g)
    }

    pub fn live_members(&self) -> &[Member] {
        self.live()
            .and_then(|g| self.generations.get(&g))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The newest generation of all, live or not: what labels like repo and branch are read
    /// from when nothing is live yet.
    pub fn newest(&self) -> Option<&Member> {
        self.generations.values().next_back()?.first()
    }

    /// Any member, preferring the live generation, for the preview's key and metadata.
    pub fn any(&self) -> Option<&Member> {
        self.live_members().first().or_else(|| self.newest())
    }

    pub fn max_generation(&self) -> u64 {
        self.generations.keys().next_back().copied().unwrap_or(0)
    }

    /// The forge that asked for this preview and where to report on it, from the labels of
    /// its live generation (the commit it serves), else of any generation. `None` when no
    /// forge asked (`previewd up`, labelled `cli`) or its repository is not `owner/name`.
    pub fn forge_target(&self) -> Option<ForgeTarget> {
        let m = self
            .live_members()
            .first()
            .or_else(|| self.generations.values().flatten().next())?;
        Some(ForgeTarget {
            forge: ForgeKind::parse(&m.forge)?,
            repo: Repo::parse(&m.repo)?,
            pr: m.pr,
            branch: m.branch.clone(),
            sha: m.sha.as_deref().and_then(|s| CommitSha::parse(s).ok()),
        })
    }
}

/// Where a preview a forge asked for is reported: its forge, repository, pull request (none
/// for a push to a branch), branch and deployed commit, as its labels say.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgeTarget {
    pub forge: ForgeKind,
    pub repo: Repo,
    pub pr: Option<u64>,
    pub branch: String,
    pub sha: Option<CommitSha>,
}

/// Groups members into previews, ordered by id.
pub fn group(members: Vec<Member>) -> Vec<Observed> {
    let mut by_id: BTreeMap<PreviewId, BTreeMap<u64, Vec<Member>>> = BTreeMap::new();
    for m in members {
        by_id
            .entry(m.preview.clone())
            .or_default()
            .entry(m.generation)
            .or_default()
            .push(m);
    }
    by_id
        .into_iter()
        .map(|(id, mut generations)| {
            for ms in generations.values_mut() {
                ms.sort_by(|a, b| a.service.cmp(&b.service));
            }
            Observed {
                id,
                generations,
                asleep: None,
                ready_in: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(id: &str, service: &str, generation: u64) -> HashMap<String, String> {
        [
            (INSTANCE, "pv"),
            (ROLE, ROLE_SERVICE),
            (PREVIEW, id),
            (SERVICE, service),
            (REPO, "o/r"),
            (BRANCH, "main"),
            (ROUTE, "/api"),
            (PORT, "3000"),
            (HEALTH, "/api/health 200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([(GENERATION.to_owned(), generation.to_string())])
        .collect()
    }

    #[test]
    fn members_parse_and_live_generation_follows_names() {
        let inst = Instance::parse("pv").unwrap();
        let id = PreviewId::parse("abcdefghij").unwrap();
        let live = parse_member(
            &inst,
            "c1",
            &["/pv-abcdefghij-api".to_owned()],
            &labels("abcdefghij", "api", 1),
            "running",
            "img",
        )
        .unwrap();
        assert!(live.canonical);
        assert_eq!(live.health, Some(("/api/health".to_owned(), 200)));
        assert_eq!(live.port, Some(3000));
        let staging = parse_member(
            &inst,
            "c2",
            &[format!("/{}", staging_name(&inst, &id, "api", 2))],
            &labels("abcdefghij", "api", 2),
            "running",
            "img",
        )
        .unwrap();
        assert!(!staging.canonical);
        let previews = group(vec![live, staging]);
        assert_eq!(previews.len(), 1);
        assert_eq!(previews[0].live(), Some(1));
        assert_eq!(previews[0].max_generation(), 2);
    }

    #[test]
    fn the_forge_label_says_where_to_report() {
        let inst = Instance::parse("pv").unwrap();
        let member = |forge: &str, repo: &str| {
            let mut l = labels("abcdefghij", "api", 1);
            l.insert(FORGE.to_owned(), forge.to_owned());
            l.insert(REPO.to_owned(), repo.to_owned());
            l.insert(PR.to_owned(), "7".to_owned());
            l.insert(SHA.to_owned(), "a".repeat(40));
            let names = ["/pv-abcdefghij-api".to_owned()];
            parse_member(&inst, "c", &names, &l, "running", "i").unwrap()
        };
        let target = |m| group(vec![m]).remove(0).forge_target();
        assert_eq!(
            target(member("github", "o/r")),
            Some(ForgeTarget {
                forge: ForgeKind::GitHub,
                repo: Repo::parse("o/r").unwrap(),
                pr: Some(7),
                branch: "main".to_owned(),
                sha: Some(CommitSha::parse(&"a".repeat(40)).unwrap()),
            })
        );
        // `previewd up` (no forge), a forge this build does not know, a repository that is a
        // URL or a folder: nothing to tell.
        assert_eq!(target(member("cli", "o/r")), None);
        assert_eq!(target(member("GitHub", "o/r")), None);
        assert_eq!(target(member("github", "/tmp/checkout")), None);
        assert_eq!(
            target(member("gitea", "o/r")).map(|t| t.forge),
            Some(ForgeKind::Gitea)
        );
        // One owner/repo and branch on two forges: two previews.
        let key = |forge: &str| PreviewKey {
            forge: forge.to_owned(),
            repo: "o/r".to_owned(),
            branch: "main".to_owned(),
        };
        let on_gitea = member("gitea", "o/r");
        assert!(on_gitea.is_for(&key("gitea")));
        assert!(!on_gitea.is_for(&key("github")));
        assert!(!member("github", "o/r").is_for(&key("gitea")));
    }

    #[test]
    fn foreign_containers_are_not_members() {
        let inst = Instance::parse("pv").unwrap();
        let mut l = labels("abcdefghij", "api", 1);
        l.insert(INSTANCE.to_owned(), "other".to_owned());
        assert!(parse_member(&inst, "c", &[], &l, "running", "i").is_none());
        let mut l = labels("../../etc/x", "api", 1);
        l.insert(INSTANCE.to_owned(), "pv".to_owned());
        assert!(parse_member(&inst, "c", &[], &l, "running", "i").is_none());
    }
}
