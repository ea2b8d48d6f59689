//! A failed build's reason made readable where BuildKit's words do not say what to do: a
//! `# syntax=` frontend that cannot be pulled, a feature this engine's frontend does not parse.
//! Pure text: nothing here talks to Docker or reads the Dockerfile.

use super::first_line;

/// A parse error of a Dockerfile that uses what Docker 20.10's frontend does not know: the
/// error, then which features and what to do.
pub(super) fn needs_newer_engine(newer: &[String], reason: &str) -> Option<String> {
    if newer.is_empty() || !reason.contains("dockerfile parse error") {
        return None;
    }
    Some(format!(
        "{}: the Dockerfile uses {}, which need(s) a newer Docker engine (23+) on the preview host than this one",
        first_line(reason),
        newer.join(", ")
    ))
}

/// A build that failed because the frontend image of the Dockerfile's `# syntax=` directive
/// could not be had (no registry here, say): one line naming the directive and the reason.
pub(super) fn frontend_unavailable(syntax: Option<&str>, reason: &str) -> Option<String> {
    let image = syntax?;
    let (_, cause) = reason.split_once("frontend gateway.v0: ")?;
    Some(format!(
        "`# syntax={image}`: the Dockerfile frontend image it names cannot be had ({cause}); remove the line to use the engine's own frontend"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_parse_error_names_the_newer_features_and_the_engine_they_need() {
        let heredoc = vec!["a heredoc `RUN <<` (line 2)".to_owned()];
        let error = "failed to solve with frontend dockerfile.v0: failed to create LLB definition: dockerfile parse error line 3: unknown instruction: ECHO";
        let r = super::needs_newer_engine(&heredoc, error).expect("explained");
        assert!(
            r.starts_with(error) && r.contains("`RUN <<` (line 2)") && r.contains("23+"),
            "{r}"
        );
        assert_eq!(super::needs_newer_engine(&[], error), None);
        assert_eq!(super::needs_newer_engine(&heredoc, "exit code: 1"), None);
    }
}
