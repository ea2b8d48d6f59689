//! A compose command line split into words as compose splits it: POSIX shell quoting, no
//! expansion of variables, globs or anything else. Pure; nothing here may run a shell.

/// Splits a command line into words as compose does (POSIX shell quoting, no expansion).
pub(super) fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("has an unclosed single quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("has an unclosed double quote".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("has an unclosed double quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("ends with a lone `\\`".to_owned()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        let ok = |s: &str| split_words(s).expect("splits");
        assert_eq!(ok("npm run dev"), ["npm", "run", "dev"]);
        assert_eq!(
            ok("  sh -c 'echo $HOME; ls'  "),
            ["sh", "-c", "echo $HOME; ls"]
        );
        assert_eq!(
            ok(r#"echo "a \"b\" c" d\ e ''"#),
            ["echo", r#"a "b" c"#, "d e", ""]
        );
        assert!(split_words("echo 'oops").is_err());
        assert!(split_words("echo \"oops").is_err());
    }
}
