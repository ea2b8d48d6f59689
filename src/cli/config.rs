//! `previewd config`: the effective operator config, each value with its origin, secrets
//! masked. Prints; never writes a config or shows a secret's text.

use std::path::Path;

use super::{CliError, Outcome};
use crate::config::{Explained, Origin, Setting, search_path};

pub fn run(path: Option<&Path>, json: bool) -> Result<Outcome, CliError> {
    let e = Explained::load(path)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&to_json(&e))?);
    } else {
        out!("{}", to_text(&e));
    }
    Ok(Outcome::Done)
}

fn origin_words(o: &Origin) -> String {
    match o {
        Origin::Default => "default".to_owned(),
        Origin::File => "file".to_owned(),
        Origin::Env(var) => format!("environment {var}"),
        Origin::Unset => "not set".to_owned(),
    }
}

/// TOML an operator can read and paste: sections as in the file, each key's origin beside it.
fn to_text(e: &Explained) -> String {
    let mut out = String::new();
    match &e.file {
        Some(f) => out.push_str(&format!("# file: {}\n", f.display())),
        None => {
            let looked: Vec<String> = search_path()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            out.push_str(&format!(
                "# file: none (looked for {}); defaults and the environment\n",
                looked.join(", ")
            ));
        }
    }
    let line = |s: &Setting, name: &str| match s.text() {
        Some(v) => format!(
            "{:<40} # {}\n",
            format!("{name} = {v}"),
            origin_words(&s.origin)
        ),
        None => format!("# {name} = (not set)\n"),
    };
    // Top-level keys first, then each section once, in the key table's order (a key added
    // out of place must not open its section twice: TOML would refuse the paste).
    let mut sections: Vec<&str> = vec![""];
    for s in &e.settings {
        let sec = s.key.split_once('.').map_or("", |(sec, _)| sec);
        if !sections.contains(&sec) {
            sections.push(sec);
        }
    }
    for sec in sections {
        if !sec.is_empty() {
            out.push_str(&format!("\n[{sec}]\n"));
        }
        for s in &e.settings {
            let (s_sec, name) = s.key.split_once('.').unwrap_or(("", s.key));
            if s_sec == sec {
                out.push_str(&line(s, name));
            }
        }
    }
    out
}

fn to_json(e: &Explained) -> serde_json::Value {
    let settings: Vec<serde_json::Value> = e
        .settings
        .iter()
        .map(|s| {
            let (origin, variable) = match &s.origin {
                Origin::Default => ("default", None),
                Origin::File => ("file", None),
                Origin::Env(v) => ("environment", Some(v.clone())),
                Origin::Unset => ("unset", None),
            };
            serde_json::json!({
                "key": s.key,
                "value": s.value,
                "origin": origin,
                "variable": variable,
            })
        })
        .collect();
    serde_json::json!({"file": e.file, "settings": settings})
}
