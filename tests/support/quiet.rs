//! Test programs leak on purpose, and mapileak reports what is still alive
//! when they end. Those process-end reports go to the program's own report
//! directory; their trace lines would go to stderr after the test harness
//! has printed its results, burying a real failure. A process-wide
//! subscriber that keeps nothing takes them instead (a test that looks at
//! events installs its own for its thread, which wins).
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

struct Discard;

impl Subscriber for Discard {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs the discarding subscriber for the whole process, once.
pub fn keep_process_end_traces_out_of_the_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Discard);
    });
}
