//! `.dockerignore` with Docker's semantics: patterns relative to the context root, Go's
//! `filepath.Match` syntax (`*`, `?`, `[...]`, `\` escapes) plus `**`, `!` exceptions, the last
//! matching pattern wins, and a pattern that matches a directory matches everything under it.
//! Matching runs a small NFA over the path, so a hostile pattern costs time linear in the path
//! length and never backtracks exponentially. Nothing here touches the file system.

/// Largest `.dockerignore` read; real ones are a few hundred bytes.
pub const MAX_BYTES: usize = 1 << 20;

/// A parsed `.dockerignore`.
#[derive(Debug, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug)]
struct Pattern {
    exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: any run of whole segments, `(.*/)?`. Two states: the
    /// start, which may skip the group or enter it, and the loop, which leaves only on a `/`.
    SegmentsStart,
    SegmentsLoop,
    /// `**` at the end: anything, `.*`.
    AnyRest,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A `.dockerignore` line that cannot be used; Docker refuses the build for it too.
#[derive(Debug, PartialEq)]
pub struct BadPattern {
    pub line: usize,
    pub reason: String,
}

impl Matcher {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<Matcher, BadPattern> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut matcher = Matcher::default();
        for (i, line) in text.lines().enumerate() {
            // As in Docker: a comment only when `#` is the very first character.
            if line.starts_with('#') {
                continue;
            }
            matcher.push(line).map_err(|reason| BadPattern {
                line: i + 1,
                reason,
            })?;
        }
        Ok(matcher)
    }

    /// Adds one pattern, as a further line of the file (it wins over earlier lines).
    pub fn push(&mut self, line: &str) -> Result<(), String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(());
        }
        let (exception, body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if body.is_empty() {
            return Err("`!` needs a pattern after it".to_owned());
        }
        let mut cleaned = clean(body);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
        let tokens = compile(&cleaned)?;
        self.patterns.push(Pattern { exception, tokens });
        Ok(())
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the context.
    pub fn excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that could change the outcome needs to run.
            if p.exception != excluded {
                continue;
            }
            if p.matches_or_parent(path) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some exception could match a path inside the directory `dir`, so that an
    /// excluded directory must still be walked.
    pub fn exception_inside(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exception && !run(&p.tokens, &prefix).iter().all(|s| !s))
    }
}

impl Pattern {
    fn matches_or_parent(&self, path: &str) -> bool {
        if accepts(&self.tokens, path) {
            return true;
        }
        path.match_indices('/')
            .any(|(i, _)| accepts(&self.tokens, &path[..i]))
    }
}

/// Go's `filepath.Clean` for a `/`-separated pattern.
fn clean(pattern: &str) -> String {
    let rooted = pattern.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // `**/` is `**`; then `**` at the end is anything, else any whole segments.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    tokens.push(Token::AnyRest);
                } else {
                    tokens.extend([Token::SegmentsStart, Token::SegmentsLoop]);
                }
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some(c) => tokens.push(Token::Literal(*c)),
                    None => return Err("ends with a lone `\\`".to_owned()),
                }
            }
            '[' => {
                let (class, next) = class(&chars, i + 1)?;
                tokens.push(class);
                i = next;
                continue;
            }
            c => tokens.push(Token::Literal(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

/// Parses a character class whose body starts at `i`; returns it and the index after `]`.
fn class(chars: &[char], mut i: usize) -> Result<(Token, usize), String> {
    let unclosed = || "has an unclosed `[`".to_owned();
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let escaped = |i: &mut usize| -> Result<char, String> {
        match chars.get(*i) {
            Some('\\') => {
                *i += 1;
                let c = chars.get(*i).copied().ok_or_else(unclosed)?;
                *i += 1;
                Ok(c)
            }
            Some(c) => {
                *i += 1;
                Ok(*c)
            }
            None => Err(unclosed()),
        }
    };
    loop {
        // As in Go, a `]` right after `[` (or `[^`) is a literal.
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let lo = escaped(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') && chars.get(i + 1) != Some(&']') {
            i += 1;
            escaped(&mut i)?
        } else {
            lo
        };
        if hi < lo {
            return Err(format!("has a backwards range `{lo}-{hi}`"));
        }
        ranges.push((lo, hi));
    }
}

/// The NFA states alive after reading `input`: `states[i]` means "about to match token `i`",
/// and `states[tokens.len()]` means "matched everything".
fn run(tokens: &[Token], input: &str) -> Vec<bool> {
    let mut states = vec![false; tokens.len() + 1];
    states[0] = true;
    close(tokens, &mut states);
    for c in input.chars() {
        let mut next = vec![false; tokens.len() + 1];
        for (i, token) in tokens.iter().enumerate() {
            if !states[i] {
                continue;
            }
            match token {
                Token::Literal(l) if *l == c => next[i + 1] = true,
                Token::Literal(_) => {}
                Token::One if c != '/' => next[i + 1] = true,
                Token::One => {}
                Token::Star if c != '/' => next[i] = true,
                Token::Star => {}
                Token::AnyRest => next[i] = true,
                Token::SegmentsStart => {}
                Token::SegmentsLoop => {
                    next[i] = true;
                    if c == '/' {
                        next[i + 1] = true;
                    }
                }
                Token::Class { negated, ranges } => {
                    let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
                    if inside != *negated {
                        next[i + 1] = true;
                    }
                }
            }
        }
        close(tokens, &mut next);
        if next.iter().all(|s| !s) {
            return next;
        }
        states = next;
    }
    states
}

/// Follows the empty moves (all forward, so one pass in order is enough): `*` and a final
/// `**` may match nothing; a `**/` group may be skipped or entered.
fn close(tokens: &[Token], states: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        if !states[i] {
            continue;
        }
        match token {
            Token::Star | Token::AnyRest => states[i + 1] = true,
            Token::SegmentsStart => {
                states[i + 1] = true;
                states[i + 2] = true;
            }
            _ => {}
        }
    }
}

fn accepts(tokens: &[Token], input: &str) -> bool {
    run(tokens, input)[tokens.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).expect("parses")
    }

    #[test]
    fn go_match_syntax() {
        let cases = [
            ("*.log", "a.log", true),
            ("*.log", "dir/a.log", false),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("**/*.log", "a.log", true),
            ("**/*.log", "x/y/a.log", true),
            ("dir/**", "dir/a/b", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("**b", "xb", false),
            ("**b", "x/b", true),
            ("a/**/b", "a/xb", false),
            ("**/x", "ax", false),
            ("**", "anything/at/all", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(m(pattern).excluded(path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn docker_cleaning_and_comments() {
        let matcher = m("# comment\n/node_modules/\n./build\n  spaced  \n \n");
        assert!(matcher.excluded("node_modules"));
        assert!(matcher.excluded("node_modules/x/y.js"));
        assert!(matcher.excluded("build/out"));
        assert!(matcher.excluded("spaced"));
        assert!(!matcher.excluded("# comment"));
        assert!(!matcher.excluded("src/build"));
        // `#` is a comment only at the start of the line.
        assert!(m(" #x").excluded("#x"));
    }

    #[test]
    fn last_match_wins_with_exceptions() {
        let matcher = m("*.md\n!README.md\nREADME*.md\n!README-keep.md");
        assert!(matcher.excluded("a.md"));
        assert!(matcher.excluded("README.md"));
        assert!(!matcher.excluded("README-keep.md"));
        assert!(!matcher.excluded("src.rs"));
    }

    #[test]
    fn directory_match_covers_children_and_exceptions_reach_inside() {
        let matcher = m("docs\n!docs/keep.md");
        assert!(matcher.excluded("docs"));
        assert!(matcher.excluded("docs/other.md"));
        assert!(!matcher.excluded("docs/keep.md"));
        assert!(matcher.exception_inside("docs"));
        assert!(!matcher.exception_inside("src"));
        assert!(m("vendor\n!**/keep").exception_inside("vendor"));
        assert!(!m("vendor").exception_inside("vendor"));
    }

    #[test]
    fn bad_patterns_are_reported_with_their_line() {
        assert_eq!(
            Matcher::parse("ok\n[abc").map(|_| ()).map_err(|e| e.line),
            Err(2)
        );
        assert!(Matcher::parse("!").is_err());
        assert!(Matcher::parse("a\\").is_err());
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let pattern = "*a".repeat(200) + "**/" + &"*?".repeat(200);
        let matcher = m(&pattern);
        let path = "a".repeat(2000) + "/b";
        let start = std::time::Instant::now();
        let _ = matcher.excluded(&path);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
