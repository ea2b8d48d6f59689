//! The operator config: layering, defaults, and the errors an operator sees.

use super::*;
use secrecy::ExposeSecret;

pub(super) fn load(text: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_parts(text, Path::new("previewd.toml"), &env)
}

#[test]
fn defaults_serve_a_local_trial() {
    let c = load(None, &[]).unwrap();
    assert_eq!(c.instance.as_str(), "previewd");
    assert_eq!(c.gateway.port, 8000);
    assert_eq!(c.gateway.domain, "localhost");
    assert_eq!(c.limits.memory, 512 << 20);
    assert_eq!(c.limits.ttl, Duration::from_secs(72 * 3600));
    assert_eq!(c.limits.parallel, 2);
    assert_eq!(c.triggers.labels, vec!["preview"]);
    assert!(c.github.webhook_secrets.is_empty());
    let id = crate::ids::PreviewId::parse("abc1234567").unwrap();
    assert_eq!(c.preview_url(&id), "http://abc1234567.localhost:8000");
    assert_eq!(c.network.subnet_pool, None);
}

#[test]
fn a_subnet_pool_is_cidr_with_a_network_size() {
    let c = load(None, &[("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.0.0/16")]).unwrap();
    let pool = c.network.subnet_pool.unwrap();
    assert_eq!(
        (pool.base.octets(), pool.prefix, pool.size),
        ([10, 213, 0, 0], 16, 24)
    );
    let c = load(
        Some("[network]\nsubnet_pool = \"172.30.0.0/20\"\nsubnet_size = 26"),
        &[],
    )
    .unwrap();
    assert_eq!(c.network.subnet_pool.map(|p| p.size), Some(26));
}

#[test]
fn env_overrides_file() {
    let c = load(
        Some("instance = \"one\"\n[gateway]\nport = 9000\n[github]\nwebhook_secret = \"a\"\n"),
        &[
            ("PREVIEWD_INSTANCE", "two"),
            ("PREVIEWD_GITHUB_WEBHOOK_SECRETS", "b, c"),
            ("PREVIEWD_LIMITS_MEMORY", "1g"),
            ("PREVIEWD_GATEWAY_PUBLIC_URL", "https://{id}.p.example.com"),
        ],
    )
    .unwrap();
    assert_eq!(c.instance.as_str(), "two");
    assert_eq!(c.gateway.port, 9000);
    assert_eq!(c.limits.memory, 1 << 30);
    let secrets: Vec<&str> = c
        .github
        .webhook_secrets
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    assert_eq!(secrets, vec!["a", "b", "c"]);
    let id = crate::ids::PreviewId::parse("abc1234567").unwrap();
    assert_eq!(c.preview_url(&id), "https://abc1234567.p.example.com");
}

#[test]
fn bad_values_name_their_key() {
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (Some("bogus = 1"), &[], "bogus"),
        (Some("[limits]\nmemory = \"lots\""), &[], "limits.memory"),
        (Some("[limits]\nttl = \"soon\""), &[], "limits.ttl"),
        (Some("instance = \"Bad_Name\""), &[], "instance"),
        (
            Some("[gateway]\npublic_url = \"https://x.example.com\""),
            &[],
            "gateway.public_url",
        ),
        (
            None,
            &[("PREVIEWD_GATEWAY_PORT", "http")],
            "PREVIEWD_GATEWAY_PORT",
        ),
        (None, &[("PREVIEWD_LISTEN", "nowhere")], "listen"),
        (None, &[("PREVIEWD_GITHUB_APP_ID", "12")], "github.app_id"),
        (Some("[limits]\nparallel = 0"), &[], "limits.parallel"),
        (
            None,
            &[("PREVIEWD_LIMITS_PARALLEL", "0")],
            "limits.parallel",
        ),
        (
            None,
            &[("PREVIEWD_LIMITS_PARALLEL", "many")],
            "PREVIEWD_LIMITS_PARALLEL",
        ),
        (
            Some("[network]\nsubnet_pool = \"10.213.0.0\""),
            &[],
            "network.subnet_pool",
        ),
        (
            None,
            &[("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.1.0/16")],
            "network.subnet_pool",
        ),
        (
            None,
            &[("PREVIEWD_NETWORK_SUBNET_POOL", "fd00::/64")],
            "network.subnet_pool",
        ),
        (
            None,
            &[
                ("PREVIEWD_NETWORK_SUBNET_POOL", "10.213.0.0/16"),
                ("PREVIEWD_NETWORK_SUBNET_SIZE", "12"),
            ],
            "network.subnet_size",
        ),
    ];
    for (text, env, key) in cases {
        let err = load(*text, env).expect_err(key).to_string();
        assert!(err.contains(key), "{err:?} does not name {key}");
    }
    // humantime's own words ("expected number at 0") do not say what was wanted.
    let err = load(None, &[("PREVIEWD_LIMITS_TTL", "xyz")])
        .expect_err("ttl")
        .to_string();
    assert!(err.contains("is not a duration like 90s"), "{err}");
}

#[test]
fn parallel_comes_from_file_then_env() {
    let file = Some("[limits]\nparallel = 3\n");
    assert_eq!(load(file, &[]).unwrap().limits.parallel, 3);
    let c = load(file, &[("PREVIEWD_LIMITS_PARALLEL", "5")]).unwrap();
    assert_eq!(c.limits.parallel, 5);
}

#[test]
fn max_queued_defaults_and_refuses_zero() {
    assert_eq!(
        load(None, &[]).unwrap().limits.max_queued,
        DEFAULT_MAX_QUEUED
    );
    let file = Some("[limits]\nmax_queued = 50\n");
    assert_eq!(load(file, &[]).unwrap().limits.max_queued, 50);
    let c = load(file, &[("PREVIEWD_LIMITS_MAX_QUEUED", "7")]).unwrap();
    assert_eq!(c.limits.max_queued, 7);
    for (text, env) in [
        (Some("[limits]\nmax_queued = 0\n"), vec![]),
        (None, vec![("PREVIEWD_LIMITS_MAX_QUEUED", "lots")]),
    ] {
        let err = load(text, &env).expect_err("refused").to_string();
        assert!(
            err.contains("max_queued") || err.contains("MAX_QUEUED"),
            "{err}"
        );
    }
}

#[test]
fn secrets_are_not_debug_printed() {
    let c = load(None, &[("PREVIEWD_GITHUB_TOKEN", "ghp_supersecret")]).unwrap();
    assert!(!format!("{c:?}").contains("supersecret"));
}

#[test]
fn sizes_parse_like_docker() {
    assert_eq!(parse_bytes("512m"), Some(512 << 20));
    assert_eq!(parse_bytes("1G"), Some(1 << 30));
    assert_eq!(parse_bytes("2048"), Some(2048));
    assert_eq!(parse_bytes("12kb"), Some(12 << 10));
    assert_eq!(parse_bytes("m"), None);
    assert_eq!(parse_bytes("99999999999999g"), None);
}

#[test]
fn decimal_sizes_round_down_to_bytes_like_compose() {
    assert_eq!(parse_bytes("1.5G"), Some(3 << 29));
    assert_eq!(parse_bytes("1.5gb"), Some(3 << 29));
    assert_eq!(parse_bytes("512.5m"), Some((1025 << 20) / 2));
    assert_eq!(parse_bytes("0.1k"), Some(102));
    assert_eq!(parse_bytes("1.999b"), Some(1));
    assert_eq!(parse_bytes("2.25 MiB"), Some(9 << 18));
    assert_eq!(parse_bytes("1t"), Some(1 << 40));
    for garbage in [
        "1.", ".5g", "1.2.3m", "1,5g", "-1m", "+1m", "1e3", "1x", "1gg", "1i", "1 5m",
    ] {
        assert_eq!(parse_bytes(garbage), None, "{garbage}");
    }
    assert_eq!(parse_bytes("8192p"), None);
}

#[test]
fn an_unknown_previewd_variable_is_refused_with_the_nearest_key() {
    for (var, nearest) in [
        ("PREVIEWD_GITHUB_TOKN", "PREVIEWD_GITHUB_TOKEN"),
        ("PREVIEWD_LIMIT_TTL", "PREVIEWD_LIMITS_TTL"),
        ("PREVIEWD_GATEWAY_DOMAINS", "PREVIEWD_GATEWAY_DOMAIN"),
        ("PREVIEWD_LOGS", "PREVIEWD_LOG"),
    ] {
        let err = load(None, &[(var, "x")]).expect_err(var).to_string();
        assert!(
            err.contains(var) && err.contains(&format!("did you mean {nearest}?")),
            "{var}: {err}"
        );
    }
    // Process settings and other programs' variables are not keys, and not refused.
    let c = load(
        None,
        &[
            ("PREVIEWD_CONFIG", "/nowhere.toml"),
            ("PREVIEWD_LOG", "debug"),
            ("PREVIEWD_LOG_FORMAT", "json"),
            ("PREVIEWDX", "1"),
            ("HOME", "/root"),
        ],
    );
    assert!(c.is_ok(), "{c:?}");
}

#[test]
fn non_unicode_variables_are_skipped_unless_they_are_ours() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let junk = || OsString::from_vec(vec![0x66, 0xff, 0xfe]);
    let env = vec![
        (junk(), OsString::from("v")),
        (OsString::from("OTHER"), junk()),
        (OsString::from("PREVIEWD_INSTANCE"), OsString::from("pv1")),
    ];
    let c = Config::from_layers(None, Path::new("previewd.toml"), env).unwrap();
    assert_eq!(c.instance.as_str(), "pv1");
    let env = vec![(OsString::from("PREVIEWD_INSTANCE"), junk())];
    let err = Config::from_layers(None, Path::new("previewd.toml"), env)
        .expect_err("our variable with a non-Unicode value")
        .to_string();
    assert!(
        err.contains("PREVIEWD_INSTANCE") && err.contains("not valid Unicode"),
        "{err}"
    );
}

/// The key table and the config's shape must agree: a field with no row could not be set from
/// the environment, and a field with a value but no default would silently be `""` or `0`.
#[test]
fn every_field_of_the_shape_has_its_row_in_the_key_table() {
    let shape = serde_json::to_value(super::settle::RawConfig::default()).unwrap();
    let mut fields = Vec::new();
    for (k, v) in shape.as_object().unwrap() {
        match v.as_object() {
            Some(section) => fields.extend(
                section
                    .iter()
                    .map(|(f, v)| (format!("{k}.{f}"), v.is_null())),
            ),
            None => fields.push((k.clone(), v.is_null())),
        }
    }
    for (name, optional) in &fields {
        let key = KEYS
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("{name} has no row in KEYS"));
        assert_eq!(
            key.default.is_none(),
            *optional,
            "{name}: a key without a default must be an Option in the shape, and only such a key"
        );
    }
    assert_eq!(fields.len(), KEYS.len(), "KEYS has rows the shape lacks");
    // Each row's default is of its kind, and the defaults alone load.
    for k in KEYS {
        assert_eq!(
            k.default.is_some(),
            k.default_value().is_some(),
            "{}",
            k.name
        );
    }
}

#[test]
fn a_variable_with_a_value_out_of_range_is_named() {
    let err = load(None, &[("PREVIEWD_GATEWAY_PORT", "99999")])
        .expect_err("port 99999")
        .to_string();
    assert!(err.contains("PREVIEWD_GATEWAY_PORT"), "{err}");
    // In the file, the error names the line.
    let err = load(Some("\n[gateway]\nport = 99999\n"), &[])
        .expect_err("port 99999")
        .to_string();
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn the_search_path_ends_at_etc() {
    let p = search_path();
    assert_eq!(p.first(), Some(&PathBuf::from("previewd.toml")));
    assert_eq!(
        p.last(),
        Some(&PathBuf::from("/etc/previewd/previewd.toml"))
    );
}

#[test]
fn gitea_and_gitlab_sections_come_from_file_and_env() {
    let c = load(None, &[]).unwrap();
    assert!(c.gitea.is_none() && c.gitlab.is_none(), "off by default");
    let text = "[gitea]\nurl = \"https://git.example.com/\"\nwebhook_secret = [\"new\", \"old\"]\n";
    let c = load(
        Some(text),
        &[
            ("PREVIEWD_GITEA_TOKEN", "tok"),
            ("PREVIEWD_GITLAB_URL", "https://gitlab.example.com"),
            ("PREVIEWD_GITLAB_WEBHOOK_SECRET", "glsecret"),
            ("PREVIEWD_GITLAB_GIT_URL", "file:///srv/git"),
        ],
    )
    .unwrap();
    let g = c.gitea.as_ref().expect("gitea on");
    assert_eq!(g.url, "https://git.example.com");
    assert_eq!(
        g.git_url, "https://git.example.com",
        "git_url defaults to url"
    );
    assert_eq!(g.status_context, "previewd");
    let secrets: Vec<&str> = g
        .webhook_secrets
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    assert_eq!(secrets, ["new", "old"]);
    assert_eq!(g.token.as_ref().map(|t| t.expose_secret()), Some("tok"));
    let l = c.gitlab.as_ref().expect("gitlab on");
    assert_eq!(l.git_url, "file:///srv/git");
    assert_eq!(l.webhook_secrets.len(), 1);
    use crate::ids::ForgeKind;
    assert_eq!(c.enabled_forges(), [ForgeKind::Gitea, ForgeKind::GitLab]);
    // One secret in the file is a string.
    let c = load(
        Some("[gitea]\nurl = \"http://g:3000\"\nwebhook_secret = \"s\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.gitea.expect("gitea").webhook_secrets.len(), 1);
}

#[test]
fn a_forge_section_without_its_url_or_with_a_bad_one_is_refused() {
    let err = load(None, &[("PREVIEWD_GITEA_WEBHOOK_SECRET", "s")])
        .expect_err("a secret without a url")
        .to_string();
    assert!(err.contains("gitea.url"), "{err}");
    let err = load(Some("[gitlab]\nurl = \"gitlab.example.com\"\n"), &[])
        .expect_err("not a web address")
        .to_string();
    assert!(err.contains("gitlab.url"), "{err}");
    let err = load(
        Some("[gitea]\nurl = \"https://g\"\nwebhook_secret = [\"\"]\n"),
        &[],
    )
    .expect_err("empty secret")
    .to_string();
    assert!(err.contains("gitea.webhook_secret"), "{err}");
    let err = load(Some("[gitea]\nurll = \"https://g\"\n"), &[])
        .expect_err("unknown key")
        .to_string();
    assert!(err.contains("urll"), "{err}");
}

#[test]
fn egress_comes_from_file_and_env_and_defaults_to_public() {
    use crate::config::egress::Mode;
    let c = load(None, &[]).unwrap();
    assert_eq!(
        (c.limits.egress.mode, c.limits.egress.build),
        (Mode::Public, Mode::Public)
    );
    assert!(c.limits.egress.allow.is_empty());
    let c = load(
        Some("[limits]\negress = \"none\"\nbuild_egress = \"all\"\n"),
        &[(
            "PREVIEWD_LIMITS_EGRESS_ALLOW",
            "10.1.2.3:5432, 192.168.50.0/24",
        )],
    )
    .unwrap();
    assert_eq!(
        (c.limits.egress.mode, c.limits.egress.build),
        (Mode::None, Mode::All)
    );
    let shown: Vec<String> = c
        .limits
        .egress
        .allow
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(shown, ["10.1.2.3:5432", "192.168.50.0/24"]);
    let err = load(None, &[("PREVIEWD_LIMITS_EGRESS", "private")])
        .expect_err("not a mode")
        .to_string();
    assert!(
        err.contains("limits.egress") && err.contains("none, public or all"),
        "{err}"
    );
}
