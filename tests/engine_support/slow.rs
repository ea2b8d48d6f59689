//! A slow client's side, shared by the tests of previewd's listeners and of the gateway: a
//! request body dripped a byte a second. Nothing here judges what the server did.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server did with a dripped body.
pub struct Dripped {
    /// When it closed the connection; `None` if it was still open at the give-up time.
    pub closed: Option<Instant>,
    /// When the first byte of an answer came, if any did.
    pub answered: Option<Instant>,
    pub answer: Vec<u8>,
}

/// Writes one byte a second (a space: padding in any JSON body) on `s`, whose request headers
/// are sent, until the server closes the connection or `give_up` has passed.
pub async fn drip_until_closed(mut s: TcpStream, give_up: Duration) -> Dripped {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut answer = Vec::new();
    let mut answered = None;
    let closed = loop {
        tokio::select! {
            _ = tick.tick() => {
                if s.write_all(b" ").await.is_err() {
                    break Some(Instant::now());
                }
            }
            read = s.read_buf(&mut answer) => match read {
                Ok(0) | Err(_) => break Some(Instant::now()),
                Ok(_) => {
                    answered.get_or_insert_with(Instant::now);
                }
            }
        }
        if started.elapsed() > give_up {
            break None;
        }
    };
    Dripped {
        closed,
        answered,
        answer,
    }
}
