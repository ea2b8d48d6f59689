//! Bounded retries for forge calls: backoff on 5xx and rate limits, honouring `Retry-After`
//! and `X-RateLimit-Reset`, and giving up once the time budget is spent. A forge outage costs
//! a report, never a worker stuck forever. Nothing here knows which forge it talks to.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;

use super::ForgeError;

/// How hard to retry one call.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff; doubled on each retry.
    pub base_delay: Duration,
    /// No single wait is longer than this; a forge asking for longer fails the call.
    pub max_delay: Duration,
    /// The whole call, waits included, stays under this.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            budget: Duration::from_secs(120),
        }
    }
}

/// What one attempt came to.
pub enum Attempt<T> {
    Done(T),
    /// Worth another try, after `after` if the forge said how long.
    Retry {
        error: ForgeError,
        after: Option<Duration>,
    },
    Fail(ForgeError),
}

/// Runs `attempt` until it succeeds, fails for good, or the policy is exhausted.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut attempt: F) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = policy.base_delay;
    let mut n = 0;
    loop {
        n += 1;
        let (error, after) = match attempt().await {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry { error, after } => (error, after),
        };
        let wait = after.unwrap_or(backoff);
        let spent = started.elapsed();
        if n >= policy.max_attempts || wait > policy.max_delay || spent + wait > policy.budget {
            return Err(error);
        }
        tracing::warn!(attempt = n, wait_ms = wait.as_millis() as u64, %error, "forge call failed; retrying");
        tokio::time::sleep(wait).await;
        backoff = backoff.saturating_mul(2).min(policy.max_delay);
    }
}

/// Whether an HTTP answer is worth retrying, and after how long if the forge said.
/// 5xx and 429 are; a 403 is only when it is a rate limit (`X-RateLimit-Remaining: 0` or a
/// `Retry-After`), otherwise it is a real refusal.
pub fn classify(status: u16, headers: &HeaderMap) -> Option<Option<Duration>> {
    let after = wait_hint(headers, SystemTime::now());
    let rate_limited = after.is_some()
        || header_str(headers, "x-ratelimit-remaining").is_some_and(|v| v.trim() == "0");
    match status {
        500..=599 | 429 => Some(after),
        403 if rate_limited => Some(after),
        _ => None,
    }
}

/// `Retry-After` (seconds), else `X-RateLimit-Reset` (epoch seconds) when nothing remains.
pub fn wait_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(secs) =
        header_str(headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    let remaining = header_str(headers, "x-ratelimit-remaining")?;
    if remaining.trim() != "0" {
        return None;
    }
    let reset = header_str(headers, "x-ratelimit-reset")?
        .trim()
        .parse::<u64>()
        .ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    // One second more: the reset is rounded down to the second.
    Some(Duration::from_secs(reset.saturating_sub(now) + 1))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_wins_then_reset() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let h = headers(&[("retry-after", "3")]);
        assert_eq!(wait_hint(&h, now), Some(Duration::from_secs(3)));
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1010"),
        ]);
        assert_eq!(wait_hint(&h, now), Some(Duration::from_secs(11)));
        let h = headers(&[
            ("x-ratelimit-remaining", "10"),
            ("x-ratelimit-reset", "1010"),
        ]);
        assert_eq!(wait_hint(&h, now), None);
    }

    #[test]
    fn only_transient_answers_are_retried() {
        let none = HeaderMap::new();
        assert!(classify(502, &none).is_some());
        assert!(classify(429, &none).is_some());
        assert!(classify(403, &none).is_none());
        assert!(classify(404, &none).is_none());
        assert!(classify(422, &none).is_none());
        let limited = headers(&[("x-ratelimit-remaining", "0")]);
        assert!(classify(403, &limited).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_within_the_budget() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            budget: Duration::from_secs(5),
        };
        let mut calls = 0;
        let r: Result<(), _> = retry(&policy, || {
            calls += 1;
            async {
                Attempt::Retry {
                    error: ForgeError::Transport {
                        call: "test",
                        reason: "down".into(),
                    },
                    after: None,
                }
            }
        })
        .await;
        assert!(r.is_err());
        // 1 + 2 = 3 s waited; a third wait of 4 s would pass the 5 s budget.
        assert_eq!(calls, 3);
    }
}
