mod record;
mod snapshot;

pub use record::Config as RecordConfig;
pub use record::Recorder;
pub use snapshot::snapshot;
