//! A preview's logs for `previewd logs`: the last lines of each service (or one), from a point
//! in time, and followed as they come. Reads Docker's log streams only; never writes to a
//! container, and never lets a service's bytes reach the terminal unescaped.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::{Manager, ManagerError};
use crate::ids::PreviewId;
use crate::preview::docker;
use crate::preview::docker::labels::Member;

/// Which lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// One service, or all of the preview's.
    pub service: Option<String>,
    /// The last this many lines of each service before following.
    pub tail: usize,
    /// Only lines written at or after this time (seconds since the Unix epoch).
    pub since: Option<i64>,
    /// Keep reading as the services write, until they stop or the reader does.
    pub follow: bool,
}

/// Which of a container's streams a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a service's log, made printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub service: String,
    pub stream: LogStream,
    pub text: String,
}

/// The lines `log_lines` found, and how many services they come from (a reader prefixes each
/// line with its service when there are several).
pub struct Logs {
    pub services: usize,
    pub lines: BoxStream<'static, LogLine>,
}

impl Manager {
    /// The services' log lines: one service after the other when not following (each service's
    /// lines together, as before), interleaved as they arrive when following.
    pub async fn log_lines(&self, id: &PreviewId, q: &LogQuery) -> Result<Logs, ManagerError> {
        let p = self.get(id).await?;
        // The live generation's containers; a preview that never went live shows its newest.
        let members: Vec<&Member> = match p.live() {
            Some(_) => p.live_members().iter().collect(),
            None => p
                .generations
                .values()
                .next_back()
                .into_iter()
                .flatten()
                .collect(),
        };
        let chosen: Vec<&Member> = members
            .into_iter()
            .filter(|m| q.service.as_deref().is_none_or(|s| s == m.service))
            .collect();
        if let (Some(s), true) = (&q.service, chosen.is_empty()) {
            return Err(ManagerError::NoService {
                id: id.to_string(),
                service: s.clone(),
            });
        }
        let streams: Vec<BoxStream<'static, LogLine>> = chosen
            .into_iter()
            .map(|m| self.service_lines(m, q))
            .collect();
        let services = streams.len();
        let lines = if q.follow {
            stream::select_all(streams).boxed()
        } else {
            stream::iter(streams).flatten().boxed()
        };
        Ok(Logs { services, lines })
    }

    fn service_lines(&self, m: &Member, q: &LogQuery) -> BoxStream<'static, LogLine> {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            follow: q.follow,
            tail: q.tail.to_string(),
            since: q
                .since
                .map_or(0, |s| s.clamp(0, i64::from(i32::MAX)) as i32),
            ..Default::default()
        };
        let service = m.service.clone();
        let mut splitter = Splitter::default();
        // A read error ends this service's lines (the container went away): the others go on.
        docker::placed::logs(&self.docker, &self.config, &m.container_id, opts)
            .take_while(|item| std::future::ready(item.is_ok()))
            .filter_map(|item| std::future::ready(item.ok()))
            .map(move |out| {
                let lines = splitter.push(&service, out);
                stream::iter(lines)
            })
            .flatten()
            .boxed()
    }
}

/// Docker sends a container's output in frames that need not end at a line's end: the part
/// after the last newline of a stream waits for the next frame of that stream.
#[derive(Default)]
struct Splitter {
    out: String,
    err: String,
}

impl Splitter {
    fn push(&mut self, service: &str, frame: LogOutput) -> Vec<LogLine> {
        let (stream, bytes) = match frame {
            LogOutput::StdErr { message } => (LogStream::Stderr, message),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (LogStream::Stdout, message)
            }
            LogOutput::StdIn { .. } => return Vec::new(),
        };
        let pending = match stream {
            LogStream::Stdout => &mut self.out,
            LogStream::Stderr => &mut self.err,
        };
        pending.push_str(&String::from_utf8_lossy(&bytes));
        let Some(last) = pending.rfind('\n') else {
            return Vec::new();
        };
        let rest = pending.split_off(last + 1);
        let whole = std::mem::replace(pending, rest);
        whole
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| LogLine {
                service: service.to_owned(),
                stream,
                text: docker::printable(l),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> LogOutput {
        LogOutput::StdOut {
            message: s.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn a_line_split_across_frames_comes_out_whole_and_escaped() {
        let mut s = Splitter::default();
        assert!(s.push("web", out("hel")).is_empty());
        let lines = s.push("web", out("lo\nwor"));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "hello");
        let err = s.push(
            "web",
            LogOutput::StdErr {
                message: b"oops \x1b[31mred\n".to_vec().into(),
            },
        );
        assert_eq!(err[0].stream, LogStream::Stderr);
        assert!(!err[0].text.contains('\x1b'), "{:?}", err[0].text);
        assert_eq!(s.push("web", out("ld\n"))[0].text, "world");
    }
}
