//! Validated identities. Everything that names a Docker object, a path under `data_dir` or a
//! host name is parsed here once, at the edge, so the rest of the code can trust it: a branch
//! called `../../etc` or `$(rm -rf /)` never becomes a path or a Docker name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identity was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidId {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> InvalidId {
    // Cap what we echo back: the value came from outside and may be huge.
    let value: String = value.chars().take(80).collect();
    InvalidId {
        what,
        value,
        reason,
    }
}

/// The alphabet of preview ids: lower-case letters and digits only, so that an id is a valid
/// DNS label and a valid piece of a Docker name (nanoid's default alphabet has `_`, `-` and
/// capitals, which are not).
pub const PREVIEW_ID_ALPHABET: [char; 36] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i',
    'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z',
];
pub const PREVIEW_ID_LEN: usize = 10;

/// A preview's id: 10 characters of `0-9a-z`, stable for the life of its (repository, branch).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PreviewId(String);

impl PreviewId {
    pub fn generate() -> Self {
        PreviewId(nanoid::nanoid!(PREVIEW_ID_LEN, &PREVIEW_ID_ALPHABET))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if s.len() != PREVIEW_ID_LEN {
            return Err(invalid("preview id", s, "must be 10 characters of 0-9a-z"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return Err(invalid("preview id", s, "must be 10 characters of 0-9a-z"));
        }
        Ok(PreviewId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `str::parse`, and clap's parser for command-line ids: an invalid id is a usage error that
/// names the argument.
impl std::str::FromStr for PreviewId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        PreviewId::parse(s)
    }
}

impl fmt::Display for PreviewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A service name from a repository's config: a DNS label (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`,
/// at most 63 characters), because it becomes a host name on the preview network and part of
/// a container name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if s.is_empty() || s.len() > 63 {
            return Err(invalid("service name", s, "must be 1 to 63 characters"));
        }
        let b = s.as_bytes();
        let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        if !b.iter().all(ok_char) || b[0] == b'-' || b[b.len() - 1] == b'-' {
            return Err(invalid(
                "service name",
                s,
                "use lower-case letters, digits and inner '-' only (a DNS label)",
            ));
        }
        Ok(ServiceName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ServiceName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A full 40-hex git commit id (lower case). Plain folders, which have no commit, use
/// a content hash of the folder made by the source module instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("commit sha", s, "must be 40 hexadecimal digits"));
        }
        Ok(CommitSha(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 7-character form people read in statuses and comments.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// The configured instance name: the prefix of every Docker object previewd creates. It must
/// be a valid start of a Docker name and short enough that `<instance>-<id>-<service>` stays
/// readable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Instance(String);

impl Instance {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if s.is_empty() || s.len() > 40 {
            return Err(invalid("instance", s, "must be 1 to 40 characters"));
        }
        let b = s.as_bytes();
        let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        if !b.iter().all(ok_char) || !b[0].is_ascii_lowercase() || b[b.len() - 1] == b'-' {
            return Err(invalid(
                "instance",
                s,
                "use lower-case letters, digits and '-', starting with a letter",
            ));
        }
        Ok(Instance(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A forge previewd talks to, as the `forge` label of a preview names it (`Forge::name`).
/// A preview `previewd up` made is labelled `cli`, which names no forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForgeKind {
    GitHub,
    /// Gitea and Forgejo: one API, one webhook format.
    Gitea,
    GitLab,
}

impl ForgeKind {
    pub const ALL: [ForgeKind; 3] = [ForgeKind::GitHub, ForgeKind::Gitea, ForgeKind::GitLab];

    /// The forge a label value names; `None` for `cli` and for anything unknown.
    pub fn parse(label: &str) -> Option<ForgeKind> {
        ForgeKind::ALL.into_iter().find(|k| k.as_str() == label)
    }

    /// The label value, the config section and the webhook route's last segment: what
    /// `Forge::name` returns for this forge.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
            ForgeKind::Gitea => "gitea",
            ForgeKind::GitLab => "gitlab",
        }
    }

    /// The forge's name as people write it, for messages.
    pub fn title(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "GitHub",
            ForgeKind::Gitea => "Gitea",
            ForgeKind::GitLab => "GitLab",
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        for _ in 0..200 {
            let id = PreviewId::generate();
            assert_eq!(PreviewId::parse(id.as_str()).as_ref(), Ok(&id));
        }
    }

    #[test]
    fn preview_id_rejects_bad_input() {
        for bad in [
            "",
            "abc",
            "ABCDEFGHIJ",
            "abcdefghi_",
            "abcdefghij0",
            "../../etc/",
        ] {
            assert!(PreviewId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn service_names_are_dns_labels() {
        for good in ["web", "api-2", "a", "x1"] {
            assert!(ServiceName::parse(good).is_ok(), "{good:?} refused");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "-web",
            "web-",
            "Web",
            "we_b",
            "we.b",
            "../x",
            long.as_str(),
        ] {
            assert!(ServiceName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sha_is_normalised_and_shortened() {
        let sha = CommitSha::parse(&"AB".repeat(20)).unwrap();
        assert_eq!(sha.as_str(), "ab".repeat(20));
        assert_eq!(sha.short(), "abababa");
        assert!(CommitSha::parse("abc").is_err());
        assert!(CommitSha::parse(&"g".repeat(40)).is_err());
    }
}
