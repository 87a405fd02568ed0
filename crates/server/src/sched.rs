//! The engine's batching scheduler, as the server uses it (see `mixture_engine::scheduler`).

pub use mixture_engine::scheduler::{
    Control, Event, GenRequest, RequestHandle, Scheduler, SchedulerConfig, SchedulerStats, Sink,
    StopReason, SubmitError, TokenConstraint,
};
