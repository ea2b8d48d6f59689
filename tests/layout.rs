//! The house's layout, kept by a test rather than by memory: no import cycle between the
//! top-level modules of `src/` (each depends on the ones below it, so a newcomer can read the
//! crate bottom up), and no source file much longer than one sitting. Reads the sources as
//! text; it never builds or runs anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// "About 400 lines", tests aside (issue 17's rule), with room for a doc comment or two.
const MAX_LINES: usize = 430;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The part of a file that ships: up to its unit tests, without `//` comments (doc links
/// name modules without importing them).
fn shipped(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file that ships, with its top-level module (`src/forge/github/rest.rs` → `forge`);
/// `lib.rs`, `main.rs` and test-only files left out.
fn modules() -> Vec<(String, PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        out.push((top, rel, text));
    }
    out
}

/// The top-level modules `text` names through `crate::` (in paths and in `use crate::{…}`).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c, d::{e, f}}`: the first word of each top-level entry.
            let (mut depth, mut word, mut first) = (0usize, String::new(), true);
            for c in group.chars() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    if first {
                        word.push(c);
                    }
                    continue;
                }
                if !word.is_empty() {
                    found.insert(std::mem::take(&mut word));
                    first = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => first = true,
                    _ => {}
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let files = modules();
    let tops: BTreeSet<String> = files.iter().map(|(t, _, _)| t.clone()).collect();
    // module -> (module it uses -> a file that uses it)
    let mut edges: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for (top, path, text) in &files {
        let code = shipped(text);
        let named = uses(&code);
        for used in named {
            if used != *top && tops.contains(&used) {
                edges
                    .entry(top.clone())
                    .or_default()
                    .entry(used)
                    .or_insert_with(|| path.clone());
            }
        }
    }
    // A cycle is a path back to where it started: depth-first from each module.
    for start in &tops {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for (next, via) in edges.get(&at).into_iter().flatten() {
                if next == start {
                    panic!(
                        "import cycle: {} -> {start} (e.g. src/{} uses crate::{start})",
                        trail.join(" -> "),
                        via.display()
                    );
                }
                if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    // The rule is about something: the crate's layers do import each other.
    assert!(
        edges.values().map(BTreeMap::len).sum::<usize>() > 10,
        "{edges:?}"
    );
}

#[test]
fn no_source_file_is_much_longer_than_one_sitting() {
    let long: Vec<String> = modules()
        .iter()
        .map(|(_, path, text)| {
            let lines = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .count();
            (path, lines)
        })
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(path, lines)| format!("src/{} ({lines} lines)", path.display()))
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines without their tests: {long:?}"
    );
}
