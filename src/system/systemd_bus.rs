//! The declared units' states from systemd's manager over D-Bus: on the
//! no-op's hot path, instead of a `systemctl show` process (a fork and
//! exec, and systemctl's own connection), one connection to the system
//! bus and two calls per unit.
//!
//! Only reading goes this way. Starting, stopping, enabling and the rest
//! stay with `systemctl` ([`super::systemctl::run`]): it waits for the job
//! and reports a failure with the unit's own words, and doing that over
//! the bus would mean re-implementing its job tracking for no gain (a
//! change is rare; the observation runs on every converge).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result};
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::plan::observed::UnitObs;

/// Longest wait for one answer from systemd.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const SYSTEMD: &str = "org.freedesktop.systemd1";

/// A connection to systemd over the system bus. `None` when it does not
/// answer (a host without a running bus, a user without the right to
/// it): the caller asks `systemctl`.
///
/// Not systemd's private socket (`/run/systemd/private`, which systemctl
/// uses as root): on that peer-to-peer socket systemd sends messages
/// whose sender is no bus name, which zbus refuses (its reader stops, and
/// every call would wait out its timeout).
pub(crate) fn connect() -> Option<Connection> {
    let system = || -> zbus::Result<Connection> {
        zbus::blocking::connection::Builder::system()?
            .method_timeout(CALL_TIMEOUT)
            .build()
    };
    match system() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(error = %e, "no D-Bus connection to systemd; reading units with systemctl");
            None
        }
    }
}

/// The states of `units`, as `systemctl show` reports them.
pub(crate) fn unit_states(
    conn: &Connection,
    units: &[String],
) -> Result<BTreeMap<String, UnitObs>> {
    let mut out = BTreeMap::new();
    for unit in units {
        out.insert(
            unit.clone(),
            unit_state(conn, unit)
                .with_context(|| format!("failed to read {unit} from systemd"))?,
        );
    }
    Ok(out)
}

/// One unit: `LoadUnit` (its object, loading it as `systemctl show`
/// does, so a unit not loaded yet reports its unit file state), then its
/// properties.
fn unit_state(conn: &Connection, unit: &str) -> zbus::Result<UnitObs> {
    let reply = conn.call_method(
        Some(SYSTEMD),
        "/org/freedesktop/systemd1",
        Some("org.freedesktop.systemd1.Manager"),
        "LoadUnit",
        &(unit,),
    )?;
    let path: OwnedObjectPath = reply.body().deserialize()?;
    let reply = conn.call_method(
        Some(SYSTEMD),
        path.as_str(),
        Some("org.freedesktop.DBus.Properties"),
        "GetAll",
        &("org.freedesktop.systemd1.Unit",),
    )?;
    let props: HashMap<String, OwnedValue> = reply.body().deserialize()?;
    let text = |key: &str| {
        props
            .get(key)
            .and_then(|v| String::try_from(v.clone()).ok())
            .unwrap_or_default()
    };
    let flag = |key: &str| {
        props
            .get(key)
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false)
    };
    Ok(UnitObs {
        loaded: text("LoadState") == "loaded",
        active_state: text("ActiveState"),
        unit_file_state: text("UnitFileState"),
        need_daemon_reload: flag("NeedDaemonReload"),
        live: true,
        refuse_manual_start: flag("RefuseManualStart"),
        refuse_manual_stop: flag("RefuseManualStop"),
    })
}
