//! [`Reported`]: what a Logoff, a Shutdown or the process-end report returns.

use mapileak_reports::{Event, ProviderKind, Report, SessionInfo};

/// What a report call returns — a logon's Logoff, a provider's Shutdown,
/// the process-end report: the report and the files written.
#[derive(Debug, Clone)]
pub struct Reported {
    /// The report, as written to the JSON file.
    pub report: Report,
    /// The report files written (none when `MAPILEAK=off` or on I/O errors).
    pub files: Vec<std::path::PathBuf>,
}

impl Reported {
    /// A report not written (yet).
    pub(crate) fn new(report: Report) -> Reported {
        Reported {
            report,
            files: Vec::new(),
        }
    }

    /// The empty report of `event`, for a provider of `provider` kind.
    pub(crate) fn empty(provider: ProviderKind, event: Event) -> Reported {
        Reported::new(Report::new(SessionInfo::new(
            0,
            provider,
            String::new(),
            event,
        )))
    }
}

/// [`Reported`], by the name it had first (a Logoff was the only report
/// then). New code names it `Reported`.
pub type Logoff = Reported;
