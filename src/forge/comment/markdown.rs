//! Text from outside made safe for markdown and status lines: one line, no table-breaking
//! pipes, inline code fenced longer than any backtick run it holds, and cuts at the forges'
//! length limits. Pure functions; nothing here may drop the ellipsis that says a text was cut.

/// A table cell: no pipes or newlines from outside break the table.
pub(super) fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|").replace('`', "'")
}

pub(super) fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// `s` as inline code, fenced by more backticks than it contains in a row.
pub(super) fn code_span(s: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(s) + 1);
    format!("{fence} {s} {fence}")
}

pub(super) fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// One line for a commit status, at most 140 characters (GitHub's limit).
pub fn status_line(s: &str) -> String {
    truncate(&one_line(s), 140)
}

/// Cuts `s` to `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
