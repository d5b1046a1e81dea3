//! [`Logoff`]: what a Logoff, a Shutdown or the process-end report returns.

use mapileak_reports::{Event, ProviderKind, Report, SessionInfo};

/// What a logoff (or Shutdown, or process-end) call returns: the report
/// and the files written.
#[derive(Debug, Clone)]
pub struct Logoff {
    /// The report, as written to the JSON file.
    pub report: Report,
    /// The report files written (none when `MAPILEAK=off` or on I/O errors).
    pub files: Vec<std::path::PathBuf>,
}

impl Logoff {
    /// A report not written (yet).
    pub(crate) fn new(report: Report) -> Logoff {
        Logoff {
            report,
            files: Vec::new(),
        }
    }

    /// The empty report of `event`, for a provider of `provider` kind.
    pub(crate) fn empty(provider: ProviderKind, event: Event) -> Logoff {
        Logoff::new(Report::new(SessionInfo::new(
            0,
            provider,
            String::new(),
            event,
        )))
    }
}
