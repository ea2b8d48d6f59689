//! BuildKit's progress, as the Engine API streams it (`aux` messages with id
//! `moby.buildkit.trace`: a base64 protobuf `moby.buildkit.v1.StatusResponse`), turned into the
//! plain lines `docker build --progress=plain` prints: `#3 [2/3] RUN make`, the step's output
//! as `#3 <line>`, `#3 CACHED`, `#3 DONE 1.2s`, `#3 ERROR: ...`. It remembers the step that
//! failed so the failure can name it. Nothing here talks to Docker.
//!
//! The messages are a hand-written subset of BuildKit's `control.proto` decoded with `prost`
//! (fields this file does not name are skipped by protobuf's rules, so a newer BuildKit's
//! additions do no harm). Not bollard's `buildkit` feature: it brings tonic, the whole
//! generated BuildKit API and a gRPC session this session-less build does not use, to decode
//! four small messages.

use std::collections::HashMap;

use prost::Message;

/// `moby.buildkit.v1.StatusResponse`: what changed since the last one.
#[derive(Clone, PartialEq, Message)]
pub struct StatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub vertexes: Vec<Vertex>,
    #[prost(message, repeated, tag = "3")]
    pub logs: Vec<VertexLog>,
    #[prost(message, repeated, tag = "4")]
    pub warnings: Vec<VertexWarning>,
}

/// A step of the build graph (a Dockerfile instruction, or BuildKit's own work).
#[derive(Clone, PartialEq, Message)]
pub struct Vertex {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(bool, tag = "4")]
    pub cached: bool,
    #[prost(message, optional, tag = "5")]
    pub started: Option<Timestamp>,
    #[prost(message, optional, tag = "6")]
    pub completed: Option<Timestamp>,
    #[prost(string, tag = "7")]
    pub error: String,
}

/// Output of a step.
#[derive(Clone, PartialEq, Message)]
pub struct VertexLog {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(bytes = "vec", tag = "4")]
    pub msg: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct VertexWarning {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(bytes = "vec", tag = "3")]
    pub short: Vec<u8>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    fn secs(&self) -> f64 {
        self.seconds as f64 + f64::from(self.nanos) / 1e9
    }
}

#[derive(Default)]
struct Step {
    number: usize,
    name: String,
    announced: bool,
    ended: bool,
}

/// The state of one build's progress: step numbers in order of appearance, and the failure.
#[derive(Default)]
pub struct Trace {
    steps: HashMap<String, Step>,
    failed: Option<String>,
}

impl Trace {
    /// Decodes one `aux` payload (base64 already removed) into lines. A payload that is not a
    /// `StatusResponse` gives one line saying so rather than an error: progress is only shown.
    pub fn feed(&mut self, payload: &[u8]) -> Vec<String> {
        let status = match StatusResponse::decode(payload) {
            Ok(s) => s,
            Err(e) => return vec![format!("(unreadable BuildKit progress: {e})")],
        };
        let mut out = Vec::new();
        // Starts first, then output, then ends: a step's header precedes its output and its
        // error follows it, as in `docker build`, whatever one message bundles.
        for v in &status.vertexes {
            let step = self.step(&v.digest);
            if !v.name.is_empty() {
                step.name = v.name.clone();
            }
            if !step.announced && (v.started.is_some() || v.cached) {
                step.announced = true;
                out.push(format!("#{} {}", step.number, step.name));
            }
        }
        for log in status.logs {
            let n = self.step(&log.vertex).number;
            let text = String::from_utf8_lossy(&log.msg);
            out.extend(text.lines().map(|l| format!("#{n} {l}")));
        }
        for v in status.vertexes {
            let step = self.step(&v.digest);
            let n = step.number;
            if step.ended {
                continue;
            }
            if v.cached {
                step.ended = true;
                out.push(format!("#{n} CACHED"));
            } else if !v.error.is_empty() {
                step.ended = true;
                out.push(format!("#{n} ERROR: {}", v.error));
                let name = step.name.clone();
                // The first failure is the cause; BuildKit cancels the steps beside it.
                if self.failed.is_none() && !v.error.contains("context canceled") {
                    self.failed = Some(name);
                }
            } else if let (Some(start), Some(end)) = (v.started, v.completed) {
                step.ended = true;
                out.push(format!(
                    "#{n} DONE {:.1}s",
                    (end.secs() - start.secs()).max(0.0)
                ));
            }
        }
        for w in status.warnings {
            let n = self.step(&w.vertex).number;
            let text = String::from_utf8_lossy(&w.short);
            out.push(format!("#{n} WARNING: {}", text.trim()));
        }
        out
    }

    /// The name of the step whose error failed the build (`[stage-0 3/3] RUN make`).
    pub fn failed_step(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn step(&mut self, digest: &str) -> &mut Step {
        let next = self.steps.len() + 1;
        self.steps.entry(digest.to_owned()).or_insert_with(|| Step {
            number: next,
            ..Step::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn vertex(digest: &str, name: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            ..Vertex::default()
        }
    }

    fn feed(trace: &mut Trace, status: StatusResponse) -> Vec<String> {
        trace.feed(&status.encode_to_vec())
    }

    #[test]
    fn steps_their_output_and_the_failing_step_become_plain_lines() {
        let mut t = Trace::default();
        let from = Vertex {
            cached: true,
            started: at(1),
            ..vertex("sha256:a", "[1/3] FROM busybox")
        };
        let run = Vertex {
            started: at(1),
            ..vertex("sha256:b", "[2/3] RUN make")
        };
        let lines = feed(
            &mut t,
            StatusResponse {
                vertexes: vec![from, run.clone()],
                ..Default::default()
            },
        );
        assert_eq!(
            lines,
            ["#1 [1/3] FROM busybox", "#2 [2/3] RUN make", "#1 CACHED"]
        );
        let log = VertexLog {
            vertex: "sha256:b".into(),
            msg: b"compiling\nerror: it broke\n".to_vec(),
        };
        let failed = Vertex {
            completed: at(3),
            error: "exit code: 2".into(),
            ..run
        };
        let lines = feed(
            &mut t,
            StatusResponse {
                logs: vec![log],
                vertexes: vec![failed],
                ..Default::default()
            },
        );
        assert_eq!(
            lines,
            [
                "#2 compiling",
                "#2 error: it broke",
                "#2 ERROR: exit code: 2"
            ]
        );
        assert_eq!(t.failed_step(), Some("[2/3] RUN make"));
    }

    #[test]
    fn a_finished_step_says_done_once_and_a_cancelled_sibling_is_not_the_cause() {
        let mut t = Trace::default();
        let done = Vertex {
            started: at(10),
            completed: at(12),
            ..vertex("d", "[2/2] COPY . /app")
        };
        let once = feed(
            &mut t,
            StatusResponse {
                vertexes: vec![done.clone(), done],
                ..Default::default()
            },
        );
        assert_eq!(once, ["#1 [2/2] COPY . /app", "#1 DONE 2.0s"]);
        let cancelled = Vertex {
            started: at(10),
            error: "context canceled".into(),
            ..vertex("e", "[other 2/2] RUN sleep 9")
        };
        feed(
            &mut t,
            StatusResponse {
                vertexes: vec![cancelled],
                ..Default::default()
            },
        );
        assert_eq!(t.failed_step(), None);
    }

    #[test]
    fn garbage_is_one_line_not_a_panic() {
        let mut t = Trace::default();
        let lines = t.feed(b"\xff\xff\xff");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("(unreadable BuildKit progress"));
    }
}
