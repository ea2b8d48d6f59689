//! The open-files budget: each open connection is a file descriptor, and a process out of them
//! can accept nothing (not even the delivery that matters). At start `serve` raises its soft
//! `RLIMIT_NOFILE` towards the hard limit as far as the connection caps need, and lowers the
//! caps to what the limit allows, keeping [`FD_RESERVE`] for everything else. Nothing here
//! serves a connection.

/// Descriptors kept for what is not a client connection: Docker's API connections, git's pack
/// files and worktrees, the gateway's admin socket, log files, the runtime's own.
pub const FD_RESERVE: u64 = 128;

/// The least a listener is given, however low the limit: below it the accept loop's own
/// fallback (close the slowest connection when out of files) is what keeps it answering.
const MIN_CAP: usize = 8;

/// What `serve` found and chose; logged at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft open-files limit after raising it (`None` where it cannot be read).
    pub limit: Option<u64>,
    /// Connections per listener: `wanted`, or less when the limit is too low for it.
    pub cap: usize,
    pub wanted: usize,
}

impl FdBudget {
    /// The limit `listeners` listeners of `wanted` connections each need.
    pub fn needed(wanted: usize, listeners: usize) -> u64 {
        (wanted as u64)
            .saturating_mul(listeners as u64)
            .saturating_add(FD_RESERVE)
    }

    /// Raises the soft limit as far as needed (never above the hard limit) and sizes the
    /// caps to the result.
    pub fn for_process(wanted: usize, listeners: usize) -> FdBudget {
        let needed = FdBudget::needed(wanted, listeners);
        let limit = match rlimit::increase_nofile_limit(needed) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or raise the open-files limit");
                rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
            }
        };
        FdBudget {
            limit,
            cap: limit.map_or(wanted, |l| connection_cap(l, wanted, listeners)),
            wanted,
        }
    }
}

/// Connections per listener that `limit` open files allow, at most `wanted`.
pub fn connection_cap(limit: u64, wanted: usize, listeners: usize) -> usize {
    let per_listener = limit.saturating_sub(FD_RESERVE) / listeners.max(1) as u64;
    usize::try_from(per_listener)
        .unwrap_or(usize::MAX)
        .clamp(MIN_CAP, wanted.max(MIN_CAP))
        .min(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_limit_with_the_reserve_kept() {
        // The common default of 1,024 files, two listeners.
        assert_eq!(connection_cap(1024, 1024, 2), (1024 - 128) / 2);
        assert!(2 * connection_cap(1024, 1024, 2) as u64 + FD_RESERVE <= 1024);
        // Enough files: the configured cap.
        assert_eq!(connection_cap(65_536, 1024, 2), 1024);
        assert_eq!(FdBudget::needed(1024, 2), 2 * 1024 + 128);
        // Absurdly low limits still leave each listener a few.
        assert_eq!(connection_cap(100, 1024, 2), MIN_CAP);
        assert_eq!(connection_cap(100, 4, 2), 4);
    }
}
