//! previewd's two edits of a Dockerfile before it is sent: the instance label stamped into
//! every stage right after its `FROM`, and the ids of `RUN --mount=type=cache` mounts put in a
//! namespace of the instance and the repository.
//!
//! Cache mounts: BuildKit keys a cache mount by its `id` (the target path when absent) across
//! every build on the daemon. Left as written, a pull request of one repository could read or
//! plant files in another repository's `/root/.npm` cache (or another tool's on the host),
//! and theirs in previewd's. With the id prefixed by a namespace, a mount is shared only by
//! builds of the same repository in the same instance: a warm build still finds the
//! dependencies its previous build downloaded.
//!
//! Docker's classic builder commits an image per step and puts a build's `labels` option only
//! on a step it appends to the end of the last stage. A build that fails or is cancelled (a
//! newer push) half-way therefore leaves untagged step images that carry no label of ours:
//! nothing could tell them from anyone else's, so they stayed on disk for good. With the label
//! stamped after each `FROM`, every step image and every build-step container carries it, and
//! the final image inherits it; `docker::prune_untagged` can then find what a build leaves.
//! It costs no step: the stamp is a cache hit after a base image's first build, and it replaces
//! the appended label step, which every rebuild ran again.
//!
//! The edit is textual and keeps every other byte: parser directives (`# escape=`), comments
//! and line continuations are honoured as Docker's parser reads them, so a `FROM` written over
//! several lines gets its stamp after its last line.

/// `dockerfile` with `LABEL key="value"` inserted after every `FROM` instruction. `key` and
/// `value` must not need quoting (previewd's label key and instance name do not).
pub fn label_stages(dockerfile: &[u8], key: &str, value: &str) -> Vec<u8> {
    edit(dockerfile, key, value, None, &mut Vec::new())
}

/// [`label_stages`], and every `--mount=type=cache` flag of a `RUN` gets `id=<namespace><id>`
/// (its own id, else its target). `namespace` must not need quoting.
pub fn label_and_namespace(dockerfile: &[u8], key: &str, value: &str, namespace: &str) -> Vec<u8> {
    edit(dockerfile, key, value, Some(namespace), &mut Vec::new())
}

/// The ids of the build secrets the `RUN` steps mount (`--mount=type=secret`: its `id`, else
/// the last component of its target, as BuildKit reads it), each once, in order.
pub fn secret_ids(dockerfile: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    edit(dockerfile, "k", "v", Some(""), &mut ids);
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

fn edit(
    dockerfile: &[u8],
    key: &str,
    value: &str,
    namespace: Option<&str>,
    secrets: &mut Vec<String>,
) -> Vec<u8> {
    let stamp = format!("LABEL {key}=\"{value}\"\n");
    let mut out = Vec::with_capacity(dockerfile.len() + 4 * stamp.len() + 256);
    let mut escape = b'\\';
    let mut directives = true;
    // Inside an instruction whose earlier line ended with the escape character.
    let mut continued = false;
    let mut is_from = false;
    // Inside a `RUN`, before its command: where its flags are.
    let mut run_flags = false;
    for (n, line) in dockerfile.split_inclusive(|b| *b == b'\n').enumerate() {
        let mut content = line.strip_suffix(b"\n").unwrap_or(line);
        content = content.strip_suffix(b"\r").unwrap_or(content);
        if n == 0 {
            content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
        }
        if directives {
            match directive(content) {
                Some((name, value)) => {
                    out.extend_from_slice(line);
                    if name.eq_ignore_ascii_case(b"escape") && value == b"`" {
                        escape = b'`';
                    }
                    continue;
                }
                None => directives = false,
            }
        }
        let text = trim_start(content);
        if text.is_empty() || text[0] == b'#' {
            // Blank and comment lines neither start nor end an instruction, even inside one.
            out.extend_from_slice(line);
            continue;
        }
        if !continued {
            let keyword = text
                .split(|b| b.is_ascii_whitespace())
                .next()
                .unwrap_or(b"");
            is_from = keyword.eq_ignore_ascii_case(b"FROM");
            run_flags = keyword.eq_ignore_ascii_case(b"RUN");
        }
        match namespace {
            Some(ns) if run_flags => {
                let skip = if continued { 0 } else { 1 };
                run_flags = namespace_flags(line, skip, ns, escape, &mut out, secrets);
            }
            _ => out.extend_from_slice(line),
        }
        continued = trim_end(content).last() == Some(&escape);
        if !continued && is_from {
            if !line.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(stamp.as_bytes());
            is_from = false;
        }
    }
    // The file ended inside a `FROM` (its last line ends with the escape character): Docker
    // ends the instruction there too.
    if continued && is_from {
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(stamp.as_bytes());
    }
    out
}

/// Copies one line of a `RUN` to `out`, its `--mount=type=cache` flags namespaced; `skip`
/// words (the keyword) come first. Every byte outside a rewritten flag is kept. `true` when
/// the flags go on (the line ended with the escape character before any command word).
fn namespace_flags(
    line: &[u8],
    skip: usize,
    ns: &str,
    escape: u8,
    out: &mut Vec<u8>,
    secrets: &mut Vec<String>,
) -> bool {
    let mut i = 0;
    let mut word = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            out.push(line[i]);
            i += 1;
            continue;
        }
        let end = line[i..]
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(line.len(), |p| i + p);
        let w = &line[i..end];
        word += 1;
        if word > skip {
            if w == [escape] && line[end..].iter().all(u8::is_ascii_whitespace) {
                out.extend_from_slice(&line[i..]);
                return true;
            }
            if !w.starts_with(b"--") {
                out.extend_from_slice(&line[i..]);
                return false;
            }
            if let Some(value) = w.strip_prefix(b"--mount=") {
                out.extend_from_slice(b"--mount=");
                out.extend_from_slice(&namespace_mount(value, ns, secrets));
                i = end;
                continue;
            }
        }
        out.extend_from_slice(w);
        i = end;
    }
    true
}

/// A mount's `k=v,...` value with `id=` namespaced when it is a cache mount; a secret mount's
/// id is added to `secrets`.
fn namespace_mount(value: &[u8], ns: &str, secrets: &mut Vec<String>) -> Vec<u8> {
    let fields: Vec<&[u8]> = value.split(|b| *b == b',').collect();
    let field = |name: &[u8]| {
        fields.iter().find_map(|f| {
            let (k, v) = f.split_at(f.iter().position(|b| *b == b'=')?);
            k.eq_ignore_ascii_case(name).then(|| &v[1..])
        })
    };
    let target = || {
        field(b"target")
            .or_else(|| field(b"dst"))
            .or_else(|| field(b"destination"))
    };
    if field(b"type").is_some_and(|t| t.eq_ignore_ascii_case(b"secret")) {
        let id = field(b"id").or_else(|| {
            let t = target()?;
            t.rsplit(|b| *b == b'/').find(|c| !c.is_empty())
        });
        // A secret mount with neither is BuildKit's error to report.
        if let Some(id) = id {
            secrets.push(String::from_utf8_lossy(id).into_owned());
        }
        return value.to_vec();
    }
    if !field(b"type").is_some_and(|t| t.eq_ignore_ascii_case(b"cache")) {
        return value.to_vec();
    }
    let Some(id) = field(b"id")
        .or_else(|| field(b"target"))
        .or_else(|| field(b"dst"))
        .or_else(|| field(b"destination"))
    else {
        return value.to_vec();
    };
    let mut kept: Vec<Vec<u8>> = fields
        .iter()
        .filter(|f| !f.to_ascii_lowercase().starts_with(b"id="))
        .map(|f| f.to_vec())
        .collect();
    kept.push([b"id=", ns.as_bytes(), id].concat());
    kept.join(&b',')
}

/// The Dockerfile features the frontend built into Docker 20.10 (1.2) does not parse, each with
/// its line: `COPY --link` / `ADD --link` and heredocs (`RUN <<EOF`), both frontend 1.4
/// (Docker 23+). Read line by line, as a hint for a person: BuildKit's parser decides.
pub fn newer_engine_features(dockerfile: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in dockerfile.split(|b| *b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(line);
        let mut words = line.split_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        let rest: Vec<&str> = words.collect();
        if ["COPY", "ADD"].contains(&keyword.as_str())
            && rest
                .iter()
                .take_while(|w| w.starts_with("--"))
                .any(|w| *w == "--link" || w.starts_with("--link="))
        {
            found.push(format!("`{keyword} --link` (line {})", n + 1));
        }
        if ["RUN", "COPY", "ADD"].contains(&keyword.as_str())
            && rest.iter().any(|w| w.starts_with("<<") && w.len() > 2)
        {
            found.push(format!("a heredoc `{keyword} <<` (line {})", n + 1));
        }
    }
    found
}

/// The frontend image a `# syntax=` parser directive names, if the Dockerfile starts with one.
pub fn syntax(dockerfile: &[u8]) -> Option<String> {
    let text = dockerfile
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(dockerfile);
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (name, value) = directive(line)?;
        if name.eq_ignore_ascii_case(b"syntax") {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    None
}

/// A parser directive line, `# name=value`, as (name, value).
fn directive(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = trim_start(line).strip_prefix(b"#")?;
    let eq = rest.iter().position(|b| *b == b'=')?;
    let name = trim_end(trim_start(&rest[..eq]));
    let valid = !name.is_empty()
        && name[0].is_ascii_alphabetic()
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    valid.then(|| (name, trim_end(trim_start(&rest[eq + 1..]))))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    &s[..s.len() - n]
}

#[cfg(test)]
mod tests {
    use super::label_stages;

    fn stamp(text: &str) -> String {
        String::from_utf8(label_stages(text.as_bytes(), "k", "v")).expect("utf-8 in, utf-8 out")
    }

    const L: &str = "LABEL k=\"v\"\n";

    #[test]
    fn every_stage_gets_the_label_after_its_from() {
        let text = "FROM busybox AS build\nRUN make\n\nfrom scratch\nCOPY --from=build /a /a\n";
        assert_eq!(
            stamp(text),
            format!(
                "FROM busybox AS build\n{L}RUN make\n\nfrom scratch\n{L}COPY --from=build /a /a\n"
            )
        );
    }

    #[test]
    fn a_from_over_several_lines_is_stamped_after_its_last_line() {
        let text = "ARG BASE=busybox\n  FROM \\\n # a comment inside\n\n   ${BASE}  \\  \r\n AS app\r\nCMD [\"x\"]";
        assert_eq!(
            stamp(text),
            format!(
                "ARG BASE=busybox\n  FROM \\\n # a comment inside\n\n   ${{BASE}}  \\  \r\n AS app\r\n{L}CMD [\"x\"]"
            )
        );
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let text = "# escape=`\nFROM busybox `\n  AS a\nRUN echo \\\nFROM scratch";
        assert_eq!(
            stamp(text),
            format!("# escape=`\nFROM busybox `\n  AS a\n{L}RUN echo \\\nFROM scratch\n{L}")
        );
        // Not a directive once an instruction or a comment came first.
        let late = "# hello\n# escape=`\nFROM busybox `\nRUN x\n";
        assert_eq!(
            stamp(late),
            format!("# hello\n# escape=`\nFROM busybox `\n{L}RUN x\n")
        );
    }

    #[test]
    fn from_inside_another_instruction_or_a_comment_is_not_a_stage() {
        let text = "FROM a\nRUN echo \\\n  FROM b\n# FROM c\nENV FROM=d\n";
        assert_eq!(
            stamp(text),
            format!("FROM a\n{L}RUN echo \\\n  FROM b\n# FROM c\nENV FROM=d\n")
        );
    }

    fn ns(text: &str) -> String {
        let out = super::label_and_namespace(text.as_bytes(), "k", "v", "p-");
        String::from_utf8(out).expect("utf-8 in, utf-8 out")
    }

    #[test]
    fn cache_mount_ids_get_the_namespace_and_nothing_else_changes() {
        let text = "FROM a\nRUN --mount=type=cache,target=/root/.npm \\\n  --mount=type=secret,id=tok \\\n  --network=none npm ci --mount=type=cache,id=x\nRUN --mount=type=cache,id=go,target=/go,sharing=locked go build\nRUN echo --mount=type=cache,id=y\n";
        assert_eq!(
            ns(text),
            format!(
                "FROM a\n{L}RUN --mount=type=cache,target=/root/.npm,id=p-/root/.npm \\\n  --mount=type=secret,id=tok \\\n  --network=none npm ci --mount=type=cache,id=x\nRUN --mount=type=cache,target=/go,sharing=locked,id=p-go go build\nRUN echo --mount=type=cache,id=y\n"
            )
        );
    }

    #[test]
    fn secret_mounts_are_listed_by_id_or_target() {
        let text = "FROM a\nRUN --mount=type=secret,id=tok \\\n  --mount=type=secret,target=/run/secrets/npmrc,required=true \\\n  --mount=type=cache,target=/c x --mount=type=secret,id=no\nRUN echo --mount=type=secret,id=no\nRUN --mount=type=secret,id=tok y\n";
        assert_eq!(super::secret_ids(text.as_bytes()), ["tok", "npmrc"]);
        assert!(super::secret_ids(b"FROM a\nRUN x\n").is_empty());
    }

    #[test]
    fn features_of_newer_frontends_are_named_with_their_line() {
        let text = "FROM a\nCOPY --link a /a\ncopy --chown=1 --link=true b /b\nRUN <<EOF\necho x\nEOF\nRUN echo --link <<x\nCOPY a --link\n";
        assert_eq!(
            super::newer_engine_features(text.as_bytes()),
            [
                "`COPY --link` (line 2)",
                "`COPY --link` (line 3)",
                "a heredoc `RUN <<` (line 4)",
                "a heredoc `RUN <<` (line 7)"
            ]
        );
        assert!(super::newer_engine_features(b"FROM a\nRUN echo <<\n").is_empty());
    }

    #[test]
    fn the_syntax_directive_is_found_only_among_the_directives() {
        let f = |t: &str| super::syntax(t.as_bytes());
        assert_eq!(
            f("# escape=`\r\n# syntax = docker/dockerfile:1.4\nFROM a\n").as_deref(),
            Some("docker/dockerfile:1.4")
        );
        assert_eq!(f("FROM a\n# syntax=x\n"), None);
        assert_eq!(f("# a comment\n# syntax=x\nFROM a\n"), None);
    }

    #[test]
    fn odd_input_is_kept_byte_for_byte() {
        assert_eq!(stamp(""), "");
        assert_eq!(stamp("RUN x\n"), "RUN x\n");
        assert_eq!(stamp("FROM a \\"), format!("FROM a \\\n{L}"));
        let bytes = b"\xEF\xBB\xBFFROM a\n\xFF\xFE\n";
        let out = label_stages(bytes, "k", "v");
        assert_eq!(out, [&bytes[..10], L.as_bytes(), b"\xFF\xFE\n"].concat());
    }
}
