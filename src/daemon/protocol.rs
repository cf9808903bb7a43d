//! The control socket's protocol: newline-delimited JSON, one request per
//! connection, answered by one or more lines (docs/control-socket.md).
//!
//! ```text
//! -> {"request":"status"}
//! <- {"type":"status","daemon":{...}}
//! -> {"request":"refresh"}                  (a command changed the state)
//! <- {"type":"refreshed"}
//! -> {"request":"converge","dry_run":false}
//! <- {"type":"queued","ahead":1}            (only when a run is in flight)
//! <- {"type":"event","event":{"event":"started",...}}   (each engine event)
//! <- {"type":"finished","exit_code":2,"result":{...}}   (the result)
//! <- {"type":"refused","message":"..."}     (not root, busy, bad request)
//! ```

use serde::{Deserialize, Serialize};

use crate::app::{ConvergeResult, DaemonView};
use crate::converge::Event;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    /// The daemon's state, phase and next run.
    Status,
    /// The agent state was changed by a command (`pause`, `rollback`,
    /// `resume`, `retry`, …): read it again, now.
    Refresh,
    /// A converge now (after the one in flight, if any), streamed back.
    Converge {
        /// Plan and report only.
        #[serde(default)]
        dry_run: bool,
        /// Converge although the host is paused.
        #[serde(default)]
        force: bool,
        /// Who asks (the user behind `sudo`), for the history and journal.
        #[serde(default)]
        by: Option<String>,
    },
}

/// One line of an answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Response {
    /// The daemon as it stands.
    Status {
        /// Its view.
        daemon: Box<DaemonView>,
    },
    /// The request waits for runs ahead of it.
    Queued {
        /// Runs ahead (the one in flight included).
        ahead: usize,
    },
    /// Progress of the run.
    Event {
        /// The engine's event.
        event: Event,
    },
    /// The run ended.
    Finished {
        /// The exit code `driftless converge --now` gives for it.
        exit_code: u8,
        /// What it did.
        result: Box<ConvergeResult>,
    },
    /// The agent state was read again.
    Refreshed,
    /// The request is not served.
    Refused {
        /// Why, for the operator.
        message: String,
    },
}

/// Longest request line a client may send.
pub(crate) const MAX_REQUEST: usize = 4096;

/// Encodes one line (with its newline).
pub(crate) fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!("{{\"type\":\"refused\",\"message\":\"cannot encode the answer: {e}\"}}")
            .into_bytes()
    });
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_strict_json_lines() {
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"converge"}"#).expect("converge"),
            Request::Converge {
                dry_run: false,
                force: false,
                by: None
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"converge","dry_run":true}"#)
                .expect("dry"),
            Request::Converge {
                dry_run: true,
                force: false,
                by: None
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"status"}"#).expect("status"),
            Request::Status
        );
        for bad in [
            r#"{"request":"reboot"}"#,
            r#"{"request":"converge","dryrun":true}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
        let l = line(&Response::Queued { ahead: 2 });
        assert_eq!(l, b"{\"type\":\"queued\",\"ahead\":2}\n");
    }
}
