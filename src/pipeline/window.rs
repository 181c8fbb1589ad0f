//! The window clock: profiles are cut at wall-clock multiples of the upload interval, so every
//! agent's windows line up on the server. The open window's start is kept here and only here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of a window: one profile per process tree every 10 s, as the Pyroscope agents do.
pub const UPLOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The open window, from its start to the next aligned boundary.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    start: SystemTime,
    end: SystemTime,
}

impl Windows {
    /// The first window starts at the aligned time before `now`.
    pub fn new(now: SystemTime) -> Windows {
        let start = align_down(now, UPLOAD_INTERVAL);
        Windows {
            start,
            end: start + UPLOAD_INTERVAL,
        }
    }

    /// How long until the open window ends (zero once it has).
    pub fn until_end(&self, now: SystemTime) -> Duration {
        self.end.duration_since(now).unwrap_or_default()
    }

    /// When `now` has crossed the boundary: the window to close, from its start to the last
    /// boundary before `now` (longer than the interval if the clock jumped); the next one
    /// starts there.
    pub fn close_if_due(&mut self, now: SystemTime) -> Option<(SystemTime, SystemTime)> {
        if now < self.end {
            return None;
        }
        let aligned = align_down(now, UPLOAD_INTERVAL);
        self.end = aligned + UPLOAD_INTERVAL;
        Some(self.close_at(aligned))
    }

    /// Closes the open window at `end` (the last, partial window: the program ended).
    pub fn close_at(&mut self, end: SystemTime) -> (SystemTime, SystemTime) {
        let start = std::mem::replace(&mut self.start, end);
        (start, end)
    }
}

/// Start of the aligned interval containing `t`.
pub fn align_down(t: SystemTime, every: Duration) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let n = since.as_nanos() / every.as_nanos();
    UNIX_EPOCH + Duration::from_nanos((n * every.as_nanos()) as u64)
}

pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64
}

/// `12:00:10-12:00:20 UTC` (a window's wall-clock time, as logs and the summary name it).
pub fn describe_window((start, end): (SystemTime, SystemTime)) -> String {
    let hms = |t: SystemTime| {
        let s = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    format!("{}-{} UTC", hms(start), hms(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_007_250);
        assert_eq!(
            align_down(t, Duration::from_secs(10)),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }

    #[test]
    fn windows_are_described_in_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            describe_window((t, t + Duration::from_secs(10))),
            "22:13:20-22:13:30 UTC"
        );
    }

    #[test]
    fn windows_close_on_aligned_boundaries() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
        let mut w = Windows::new(at(7_250));
        assert_eq!(w.until_end(at(7_250)), Duration::from_millis(2_750));
        assert_eq!(w.close_if_due(at(9_999)), None);
        assert_eq!(w.close_if_due(at(10_001)), Some((at(0), at(10_000))));
        assert_eq!(w.until_end(at(10_001)), Duration::from_millis(9_999));
        // The clock jumped (machine suspended): one long window up to the last boundary.
        assert_eq!(w.close_if_due(at(35_000)), Some((at(10_000), at(30_000))));
        // The program ends mid-window: the last window is partial.
        assert_eq!(w.close_at(at(31_500)), (at(30_000), at(31_500)));
        assert_eq!(w.until_end(at(45_000)), Duration::ZERO);
    }
}
