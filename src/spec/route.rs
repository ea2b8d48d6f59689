//! Route prefixes and health-check paths. A route becomes part of the gateway's config and a
//! Docker label, so only plain path prefixes pass: no host, no query, no `..`, no `//`, no
//! whitespace, no characters that would need escaping. Nothing here knows about services.

use super::Route;

/// Longest route or health path accepted; real ones are a few segments.
pub const MAX_PATH_LEN: usize = 256;

/// The deepest route accepted, in segments: the gateway's route table holds this many.
pub const MAX_SEGMENTS: usize = 8;

impl Route {
    /// Parses a route prefix from a repository's config. A trailing `/` is dropped (`/api/` is
    /// the prefix `/api`) so that two spellings of one prefix count as the same route.
    pub fn parse(s: &str) -> Result<Route, String> {
        check_path(s)?;
        let max = MAX_SEGMENTS;
        if s.split('/').filter(|seg| !seg.is_empty()).count() > max {
            return Err(format!(
                "has more than {max} segments; the gateway routes prefixes up to /a/b/c/d/e/f/g/h"
            ));
        }
        let trimmed = s.trim_end_matches('/');
        if trimmed.is_empty() {
            Ok(Route::root())
        } else {
            Ok(Route(trimmed.to_owned()))
        }
    }

    /// Whether a request path reaches this route's prefix at a segment boundary (`/api` covers
    /// `/api` and `/api/users`, not `/apix`).
    pub fn covers(&self, path: &str) -> bool {
        let p = self.as_str();
        p == "/"
            || path == p
            || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'))
    }
}

/// The route among `routes` that the gateway, matching the longest prefix first, sends `path`
/// to.
pub fn longest_match<'a, T>(
    routes: impl IntoIterator<Item = (T, &'a Route)>,
    path: &str,
) -> Option<T> {
    routes
        .into_iter()
        .filter(|(_, r)| r.covers(path))
        .max_by_key(|(_, r)| r.as_str().len())
        .map(|(t, _)| t)
}

/// Checks a path for use as a route or a health-check path. The error says what to fix.
pub fn check_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("must be a path starting with `/` (e.g. `/api`), not a URL or host".into());
    }
    if s.len() > MAX_PATH_LEN {
        return Err(format!("is longer than {MAX_PATH_LEN} characters"));
    }
    if s.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    if s.contains('?') || s.contains('#') {
        return Err("must be a plain path, without a query (`?`) or fragment (`#`)".into());
    }
    if s.contains("..") {
        return Err("must not contain `..`".into());
    }
    if s.contains("//") {
        return Err("must not contain `//` (a path, not a URL with a host)".into());
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/');
    if !s.chars().all(plain) {
        return Err("may contain only letters, digits, `-`, `.`, `_`, `~` and `/`".into());
    }
    if s.split('/').any(|segment| segment == ".") {
        return Err("must not contain `.` segments".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_routes_parse_and_trailing_slash_is_dropped() {
        assert_eq!(Route::parse("/").map(|r| r.0), Ok("/".to_owned()));
        assert_eq!(Route::parse("/api").map(|r| r.0), Ok("/api".to_owned()));
        assert_eq!(Route::parse("/api/").map(|r| r.0), Ok("/api".to_owned()));
        assert_eq!(
            Route::parse("/a/b-c_d.e~f").map(|r| r.0),
            Ok("/a/b-c_d.e~f".to_owned())
        );
    }

    #[test]
    fn hostile_routes_are_refused() {
        for bad in [
            "",
            "api",
            "http://evil.example/",
            "//evil.example",
            "/a/../b",
            "/..",
            "/a//b",
            "/a?x=1",
            "/a#frag",
            "/a b",
            "/a\tb",
            "/a\nb",
            "/a%2e%2e",
            "/a*",
            "/./a",
            "/é",
            &format!("/{}", "a".repeat(300)),
            "/1/2/3/4/5/6/7/8/9",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            Route::parse("/1/2/3/4/5/6/7/8/").is_ok(),
            "eight segments are routed"
        );
    }

    #[test]
    fn covers_at_segment_boundaries() {
        let api = Route("/api".to_owned());
        assert!(api.covers("/api"));
        assert!(api.covers("/api/users"));
        assert!(!api.covers("/apix"));
        assert!(!api.covers("/"));
        assert!(Route::root().covers("/anything"));
    }

    #[test]
    fn longest_prefix_wins() {
        let root = Route::root();
        let api = Route("/api".to_owned());
        let routes = [("web", &root), ("api", &api)];
        assert_eq!(longest_match(routes, "/api/health"), Some("api"));
        assert_eq!(longest_match(routes, "/health"), Some("web"));
        assert_eq!(longest_match([("api", &api)], "/health"), None);
    }
}
