//! `--format json`: libtest's JSON event lines (`{"type":"test","event":"failed",...}`),
//! written by the runner instead of libtest-mimic, whose printer wraps a failure's text as
//! `Error: "..."` (Rust's Debug form of an error returned from a test). Here `stdout` holds
//! the failure block as plain text, as a test that printed it would have.

use std::time::Instant;

/// A JSON string literal.
fn q(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The event stream of one run.
#[derive(Debug)]
pub struct JsonEvents {
    passed: usize,
    failed: usize,
    ignored: usize,
    filtered_out: usize,
    started: Instant,
}

/// How one check ended, for its event.
#[derive(Debug)]
pub enum Event<'a> {
    Ok,
    Failed(&'a str),
    Ignored(&'a str),
}

impl JsonEvents {
    /// `{"type":"suite","event":"started","test_count":N}`.
    pub fn start(test_count: usize, filtered_out: usize) -> JsonEvents {
        outln!(r#"{{"type":"suite","event":"started","test_count":{test_count}}}"#);
        JsonEvents { passed: 0, failed: 0, ignored: 0, filtered_out, started: Instant::now() }
    }

    /// `{"type":"test","event":"started","name":...}`.
    pub fn test_started(&self, name: &str) {
        outln!(r#"{{"type":"test","event":"started","name":{}}}"#, q(name));
    }

    /// The test's outcome event.
    pub fn test_finished(&mut self, name: &str, how: &Event<'_>) {
        let line = match how {
            Event::Ok => {
                self.passed += 1;
                format!(r#"{{"type":"test","name":{},"event":"ok"}}"#, q(name))
            }
            Event::Failed(text) => {
                self.failed += 1;
                format!(r#"{{"type":"test","name":{},"event":"failed","stdout":{}}}"#, q(name), q(text))
            }
            Event::Ignored(reason) => {
                self.ignored += 1;
                format!(r#"{{"type":"test","name":{},"event":"ignored","message":{}}}"#, q(name), q(reason))
            }
        };
        outln!("{line}");
    }

    /// The suite's closing event with the counts.
    pub fn finish(&self) {
        outln!(
            r#"{{"type":"suite","event":"{}","passed":{},"failed":{},"ignored":{},"measured":0,"filtered_out":{},"exec_time":{}}}"#,
            if self.failed > 0 { "failed" } else { "ok" },
            self.passed,
            self.failed,
            self.ignored,
            self.filtered_out,
            self.started.elapsed().as_secs_f64()
        );
    }
}
