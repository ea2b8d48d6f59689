//! Links people follow to a forge's own pages (a pull request), built from the configured
//! forges' web addresses. Nothing here calls a forge; a link is only made to an `http(s)` base
//! the operator configured, never to one a payload or a label names.

use super::ForgeKind;

/// The web address of each configured forge.
#[derive(Debug, Clone, Default)]
pub struct ForgeLinks {
    github: Option<String>,
    gitea: Option<String>,
    gitlab: Option<String>,
}

fn web(base: &str) -> Option<String> {
    let base = base.trim_end_matches('/');
    (base.starts_with("https://") || base.starts_with("http://")).then(|| base.to_owned())
}

impl ForgeLinks {
    pub fn from_config(config: &crate::config::Config) -> ForgeLinks {
        ForgeLinks {
            github: web(&config.github.git_url),
            gitea: config.gitea.as_ref().and_then(|g| web(&g.url)),
            gitlab: config.gitlab.as_ref().and_then(|g| web(&g.url)),
        }
    }

    /// The page of pull request `number` of `repo` (`owner/name`, or a GitLab project's
    /// path) on the forge a preview's `forge` label names.
    pub fn pull_request(&self, forge: &str, repo: &str, number: u64) -> Option<String> {
        let kind = ForgeKind::parse(forge)?;
        let (base, path) = match kind {
            ForgeKind::GitHub => (self.github.as_ref()?, format!("pull/{number}")),
            ForgeKind::Gitea => (self.gitea.as_ref()?, format!("pulls/{number}")),
            ForgeKind::GitLab => (self.gitlab.as_ref()?, format!("-/merge_requests/{number}")),
        };
        Some(format!("{base}/{repo}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_forge_names_its_pull_requests_in_its_own_words() {
        let links = ForgeLinks {
            github: web("https://github.com"),
            gitea: web("https://gitea.example.com/"),
            gitlab: web("https://gitlab.example.com"),
        };
        assert_eq!(
            links.pull_request("github", "o/r", 7).as_deref(),
            Some("https://github.com/o/r/pull/7")
        );
        assert_eq!(
            links.pull_request("gitea", "o/r", 7).as_deref(),
            Some("https://gitea.example.com/o/r/pulls/7")
        );
        assert_eq!(
            links.pull_request("gitlab", "g/sub/r", 7).as_deref(),
            Some("https://gitlab.example.com/g/sub/r/-/merge_requests/7")
        );
        assert_eq!(links.pull_request("cli", "/tmp/x", 7), None);
        assert_eq!(web("file:///tmp/repos"), None);
    }
}
