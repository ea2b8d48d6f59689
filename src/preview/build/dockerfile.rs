//! Stamping previewd's instance label into every stage of a Dockerfile, right after its `FROM`.
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
    let stamp = format!("LABEL {key}=\"{value}\"\n");
    let mut out = Vec::with_capacity(dockerfile.len() + 4 * stamp.len());
    let mut escape = b'\\';
    let mut directives = true;
    // Inside an instruction whose earlier line ended with the escape character.
    let mut continued = false;
    let mut is_from = false;
    for (n, line) in dockerfile.split_inclusive(|b| *b == b'\n').enumerate() {
        out.extend_from_slice(line);
        let mut content = line.strip_suffix(b"\n").unwrap_or(line);
        content = content.strip_suffix(b"\r").unwrap_or(content);
        if n == 0 {
            content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
        }
        if directives {
            match directive(content) {
                Some((name, value)) => {
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
            continue;
        }
        if !continued {
            let keyword = text
                .split(|b| b.is_ascii_whitespace())
                .next()
                .unwrap_or(b"");
            is_from = keyword.eq_ignore_ascii_case(b"FROM");
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
