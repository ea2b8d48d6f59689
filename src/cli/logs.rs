//! `previewd logs ID [SERVICE]`: a preview's log lines, the last `--tail` of each service (or
//! from `--since`), followed with `-f`; each line prefixed with its service when there are
//! several, or one JSON object per line with `--json`.

use std::io::Write;

use futures_util::StreamExt;

use super::{CliError, Outcome};
use crate::config::Config;
use crate::ids::PreviewId;
use crate::preview::manager::{LogQuery, Manager};

pub async fn run(
    config: Config,
    id: &PreviewId,
    query: LogQuery,
    json: bool,
) -> Result<Outcome, CliError> {
    let manager = Manager::connect(config).await?;
    let logs = manager.log_lines(id, &query).await?;
    let (many, mut lines) = (logs.services > 1, logs.lines);
    let mut stdout = std::io::stdout().lock();
    while let Some(l) = lines.next().await {
        let written = if json {
            let v = serde_json::json!({
                "service": l.service,
                "stream": l.stream.as_str(),
                "line": l.text,
            });
            writeln!(stdout, "{v}")
        } else if many {
            writeln!(stdout, "{} | {}", l.service, l.text)
        } else {
            writeln!(stdout, "{}", l.text)
        };
        // A closed pipe (`previewd logs -f ID | head`) ends the command quietly.
        if written.and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
    Ok(Outcome::Done)
}

/// `--since`: a duration back from now (`10m`, `2h`) or a time (`2026-12-07T10:00:00Z`), as
/// seconds since the Unix epoch.
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        return Ok(now - i64::try_from(d.as_secs()).unwrap_or(i64::MAX).min(now));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            format!(
                "{s:?} is neither a duration like 10m or 2h nor a time like 2026-12-07T10:00:00Z"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let ten_min = parse_since("10m").expect("a duration");
        assert!((now - 601..=now - 599).contains(&ten_min), "{ten_min}");
        assert_eq!(parse_since("2026-12-07T10:00:00Z"), Ok(1_796_637_600));
        let err = parse_since("yesterday").expect_err("not a time");
        assert!(err.contains("10m"), "{err}");
    }
}
