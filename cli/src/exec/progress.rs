//! Per-host progress bars (indicatif) for people: one line per host showing its current phase
//! and step, finished with done/failed. Drawn on stderr; hidden when stderr is not a terminal.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::events::{Event, EventSink};

pub struct ProgressBars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl ProgressBars {
    /// Bars for these hosts, in this order.
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:>12} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut bars = BTreeMap::new();
        for host in hosts {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(host.to_string());
            bar.set_message("waiting");
            bar.enable_steady_tick(Duration::from_millis(120));
            bars.insert(host.to_string(), bar);
        }
        ProgressBars { multi, bars: Mutex::new(bars) }
    }

    fn with_bar(&self, host: &str, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).get(host) {
            f(bar);
        }
    }
}

impl EventSink for ProgressBars {
    fn emit(&self, event: &Event) {
        match event {
            Event::StepStarted { host, phase, step } => {
                self.with_bar(host, |b| b.set_message(format!("{phase}: {step}")));
            }
            Event::StepFailed { host, phase, step, .. } => {
                self.with_bar(host, |b| {
                    b.abandon_with_message(format!("FAILED in {phase}: {step}"))
                });
            }
            Event::HostBlocked { host, reason } => {
                self.with_bar(host, |b| b.abandon_with_message(format!("blocked: {reason}")));
            }
            Event::HostSkipped { host, phase, reason } => {
                self.with_bar(host, |b| {
                    b.abandon_with_message(format!("left untouched from {phase}: {reason}"))
                });
            }
            Event::RunFinished { .. } => {
                for bar in self.bars.lock().unwrap_or_else(|p| p.into_inner()).values() {
                    if !bar.is_finished() {
                        bar.finish_with_message("done");
                    }
                }
                let _ = self.multi.clear();
            }
            _ => {}
        }
    }
}
