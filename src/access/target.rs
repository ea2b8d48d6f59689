//! The addresses a sign-in deals in: the sign-in host (`auth.<domain>`, shaped like a preview's
//! host), the preview a host names, and the return address a browser is sent back to, which
//! must be a preview host of this instance (no open redirect). Pure string work: nothing here
//! reads labels, the clock or the network.

use url::Url;

use crate::config::Config;
use crate::ids::PreviewId;

/// The label of the sign-in host, in a preview host's place. Preview ids are 10 characters,
/// so no preview is ever called this.
pub const AUTH_LABEL: &str = "auth";
/// The sign-in host's paths: where a browser starts, and the OAuth callback.
pub const LOGIN_PATH: &str = "/_previewd/login";
pub const CALLBACK_PATH: &str = "/_previewd/callback";
/// On a preview's own host: where a signed ticket becomes the preview's session cookie. The
/// gateway answers this path from previewd; it never reaches the preview.
pub const SESSION_PATH: &str = "/_previewd/session";

/// The shape of this instance's gateway URLs.
#[derive(Debug, Clone)]
pub struct Gateway {
    scheme: String,
    /// What follows the first label of a gateway host: `.localhost`, `.preview.example.com`.
    suffix: String,
    port: Option<u16>,
    auth_base: String,
}

impl Gateway {
    pub fn new(config: &Config) -> Gateway {
        // A URL shaped like every preview's, with a label that cannot be an id.
        let sample = config.gateway_url("x0");
        let parsed = Url::parse(&sample).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Gateway {
            scheme: parsed
                .as_ref()
                .map_or("http".to_owned(), |u| u.scheme().to_owned()),
            suffix: host.strip_prefix("x0").unwrap_or_default().to_owned(),
            port: parsed.as_ref().and_then(Url::port),
            auth_base: config
                .gateway_url(AUTH_LABEL)
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// Whether visitors come over https (cookies are then `Secure` and `__Host-` prefixed).
    pub fn secure(&self) -> bool {
        self.scheme == "https"
    }

    /// `scheme://auth.<domain>[:port]`, without a trailing `/`.
    pub fn auth_base(&self) -> &str {
        &self.auth_base
    }

    /// The OAuth callback's URL (registered with each forge's OAuth application).
    pub fn callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.auth_base)
    }

    /// The preview a gateway host (`id.<domain>`, `id-service.<domain>`, `id-2.<domain>`)
    /// belongs to, port or not; `None` for any other host.
    pub fn preview_of_host(&self, host: &str) -> Option<PreviewId> {
        let host = host.to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
            _ => host,
        };
        let label = name.strip_suffix(&self.suffix)?;
        if label.contains('.') {
            return None;
        }
        let id = label.get(..crate::ids::PREVIEW_ID_LEN)?;
        let rest = &label[id.len()..];
        if !(rest.is_empty() || rest.starts_with('-')) {
            return None;
        }
        PreviewId::parse(id).ok()
    }

    /// `url` when it may be a sign-in's return address: this gateway's scheme and port, and a
    /// preview host of this instance. Anything else (another host, `auth` itself, a scheme
    /// trick, user info) is refused.
    pub fn return_address(&self, url: &str) -> Option<(Url, PreviewId)> {
        let u = Url::parse(url).ok()?;
        if u.scheme() != self.scheme
            || u.port() != self.port
            || !u.username().is_empty()
            || u.password().is_some()
        {
            return None;
        }
        let id = self.preview_of_host(u.host_str()?)?;
        Some((u, id))
    }

    /// The URL a request for `host` and `path_and_query` asked for.
    pub fn url_of(&self, host: &str, path_and_query: &str) -> String {
        format!("{}://{host}{path_and_query}", self.scheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn gateway(env: &[(&str, &str)]) -> Gateway {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Gateway::new(&Config::from_parts(None, Path::new("t"), &env).unwrap())
    }

    #[test]
    fn only_this_instances_preview_hosts_are_return_addresses() {
        let g = gateway(&[]);
        assert_eq!(g.auth_base(), "http://auth.localhost:8000");
        let ok = g
            .return_address("http://abcde12345.localhost:8000/p?q=1")
            .unwrap();
        assert_eq!(ok.1.as_str(), "abcde12345");
        assert!(
            g.return_address("http://abcde12345-web.localhost:8000/")
                .is_some()
        );
        for bad in [
            "http://evil.example.com:8000/",
            "http://abcde12345.localhost.evil.com:8000/",
            "http://abcde12345.localhost:9000/",
            "https://abcde12345.localhost:8000/",
            "http://auth.localhost:8000/",
            "http://x.abcde12345.localhost:8000/",
            "http://u:p@abcde12345.localhost:8000/",
            "//evil.example.com/",
            "javascript:alert(1)",
            "http://abcde1234.localhost:8000/",
        ] {
            assert!(g.return_address(bad).is_none(), "{bad} accepted");
        }
    }

    #[test]
    fn a_public_url_gives_the_shape() {
        let g = gateway(&[("PREVIEWD_GATEWAY_PUBLIC_URL", "https://{id}.p.example.com")]);
        assert!(g.secure());
        assert_eq!(
            g.callback_url(),
            "https://auth.p.example.com/_previewd/callback"
        );
        assert!(
            g.return_address("https://abcde12345.p.example.com/x")
                .is_some()
        );
        assert!(
            g.return_address("https://abcde12345.q.example.com/x")
                .is_none()
        );
    }
}
