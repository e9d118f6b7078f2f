//! What the executor reports while it runs: one `Event` per phase, step and outcome. Sinks turn
//! them into progress bars (people), JSON lines (`-o json`) or nothing (tests collect them).

use std::sync::Mutex;

use serde::Serialize;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepOutcome {
    /// Something on the host changed.
    Changed,
    /// The host already matched (file identical, `unless` probe succeeded).
    Unchanged,
}

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    PhaseStarted {
        phase: String,
        hosts: usize,
    },
    StepStarted {
        host: String,
        phase: String,
        step: String,
    },
    StepFinished {
        host: String,
        phase: String,
        step: String,
        outcome: StepOutcome,
        duration_ms: u64,
    },
    StepFailed {
        host: String,
        phase: String,
        step: String,
        error: String,
    },
    HostBlocked {
        host: String,
        reason: String,
    },
    /// A host a batched phase did not reach because an earlier batch failed: it is left
    /// untouched by this phase and every later one.
    HostSkipped {
        host: String,
        phase: String,
        reason: String,
    },
    PhaseFinished {
        phase: String,
    },
    Interrupted {
        phase: String,
    },
    RunFinished {
        changed: usize,
        unchanged: usize,
        failed_hosts: usize,
        interrupted: bool,
    },
}

/// Receives events; must be cheap and never fail the run.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Prints each event as one JSON line on stdout (`-o json`).
#[derive(Debug, Default)]
pub struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
    }
}

/// Keeps every event (tests).
#[derive(Debug, Default)]
pub struct Collect(pub Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: &Event) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event.clone());
    }
}

impl Collect {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Forwards to several sinks.
pub struct Fanout(pub Vec<Box<dyn EventSink>>);

impl EventSink for Fanout {
    fn emit(&self, event: &Event) {
        for sink in &self.0 {
            sink.emit(event);
        }
    }
}
