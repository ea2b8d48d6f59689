//! Colour on stdout for a person at a terminal: green for what is well, red for what failed,
//! yellow for what needs a look. Off on a pipe, in a file or a CI log, and whenever
//! `NO_COLOR` is set (no-color.org). Never changes the text itself: a cell is padded first,
//! then painted, so columns stay aligned.

use std::io::IsTerminal;

use crate::engine::PreviewStatus;

#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// For what goes to stdout.
    pub fn stdout() -> Paint {
        Paint {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn wrap(self, code: &str, text: String) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text
        }
    }

    pub fn good(self, text: String) -> String {
        self.wrap("32", text)
    }

    pub fn bad(self, text: String) -> String {
        self.wrap("31", text)
    }

    pub fn warn(self, text: String) -> String {
        self.wrap("33", text)
    }

    /// A preview's status word, padded to `width`.
    pub fn status(self, status: PreviewStatus, width: usize) -> String {
        let text = format!("{:<width$}", status.to_string());
        match status {
            PreviewStatus::Running => self.good(text),
            PreviewStatus::Failed => self.bad(text),
            _ => self.warn(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_comes_before_colour_and_off_means_plain() {
        let on = Paint { on: true };
        assert_eq!(on.good(format!("{:<4}", "ok")), "\x1b[32mok  \x1b[0m");
        let off = Paint { on: false };
        assert_eq!(off.status(PreviewStatus::Failed, 8), "failed  ");
    }
}
