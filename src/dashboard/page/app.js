// driftless fleet dashboard: draws /api/status (the JSON of
// `driftless fleet status --json`) and draws it again on every `change`
// event of /events. No framework, nothing loaded from elsewhere; every
// text from the fleet goes into the page as text, never as markup.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const asked = params.get("commit") || "";
  const api = "/api/status" + (asked ? "?commit=" + encodeURIComponent(asked) : "");
  const $ = (id) => document.getElementById(id);
  let reading = false;
  let again = false;
  let poller = null;
  let draws = 0;

  // An element with attributes and children (strings become text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("data-")) {
        e.setAttribute(k, v);
      } else {
        e[k] = v;
      }
    }
    for (const c of children) {
      if (c !== null && c !== undefined) {
        e.append(c instanceof Node ? c : String(c));
      }
    }
    return e;
  }

  function short(c) {
    return c ? c.slice(0, 12) : "nothing";
  }

  function ago(secs) {
    if (secs < 90) return Math.max(0, secs) + " s";
    if (secs < 5400) return Math.round(secs / 60) + " min";
    if (secs < 172800) return Math.round(secs / 3600) + " h";
    return Math.round(secs / 86400) + " d";
  }

  // A host's state: one word for the page (and its tests), and a note.
  function hostState(h) {
    if (h.applying) return ["applying", "applying " + short(h.applying)];
    if (h.outcome === "rolled_back") return ["rolled-back", "rolled back"];
    if (h.outcome === "rollback_failed") return ["failing", "rollback failed"];
    if (h.last_error || h.outcome === "error" || h.outcome === "invalid") {
      return ["failing", "failing"];
    }
    if (h.paused) return ["paused", "paused"];
    if (h.waiting) return ["waiting", "waiting"];
    return ["healthy", "healthy"];
  }

  function replace(id, ...children) {
    $(id).replaceChildren(...children);
  }

  function part(id, items) {
    $(id + "-part").hidden = items.length === 0;
    replace(id, ...items);
  }

  function progress(s) {
    return s.waves.map((w) =>
      el("li", { "data-wave": w.name },
        el("strong", {}, w.name),
        el("span", { className: "wave-" + w.state }, w.state),
        el("span", {}, w.on_commit.length + " of " + w.live + " on the commit"),
        el("progress", { max: Math.max(1, w.live), value: w.on_commit.length })));
  }

  function hostRow(s, w, h) {
    const [state, note] = hostState(h);
    const notes = [];
    if (h.waiting) notes.push("waits: " + h.waiting);
    if (h.paused) notes.push("paused: " + h.paused);
    if (h.last_error) notes.push("error: " + h.last_error);
    const drift = h.drift && h.drift.count > 0
      ? h.drift.count + " (" + h.drift.resources.join(", ") + ")" : "none";
    return el("tr", { "data-host": h.host, "data-state": state },
      el("td", {}, el("strong", {}, h.host)),
      el("td", { className: "state" }, note),
      el("td", {}, el("code", { title: h.applied || "" }, short(h.applied)),
        w.on_commit.includes(h.host) ? " ✓" : ""),
      el("td", {}, drift),
      el("td", {}, h.reboot_required_since ? "required since " + h.reboot_required_since : "no"),
      el("td", {}, h.outcome),
      el("td", {}, ago(s.read_at - h.at)),
      el("td", {}, [h.os, h.kernel && "kernel " + h.kernel, "driftless " + h.version]
        .filter(Boolean).join(", ")),
      el("td", {}, notes.join("; ")));
  }

  function hostTables(s) {
    return s.waves.map((w) => {
      const head = el("tr", {}, ...["Host", "State", "Runs", "Drift", "Reboot", "Last run",
        "Record age", "System", "Notes"].map((t) => el("th", {}, t)));
      const rows = w.hosts.map((h) => hostRow(s, w, h));
      return el("div", { "data-wave-hosts": w.name },
        el("h3", {}, "Wave " + w.name + " (" + w.live + " live, " + w.state + ")"),
        el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
    });
  }

  function draw(s) {
    $("error").hidden = true;
    $("prefix").textContent = s.prefix;
    $("rev").textContent = s.commit ? short(s.commit) : "(none fetched here)";
    $("rev").title = s.commit || "";
    $("halt").hidden = !s.halt;
    $("halt").textContent = s.halt ? "Fleet halted: " + s.halt.reason : "";
    replace("progress", ...progress(s));
    replace("hosts", ...hostTables(s));
    const rollbacks = [];
    for (const w of s.waves) {
      for (const [host, why] of w.rolled_back) {
        rollbacks.push(el("li", { "data-rollback": host }, host + " (wave " + w.name + "): " + why));
      }
    }
    part("rollbacks", rollbacks);
    const reboots = [];
    for (const w of s.waves) {
      for (const h of w.hosts.filter((x) => x.reboot_required_since)) {
        reboots.push(el("li", {}, h.host + ": reboot required since " + h.reboot_required_since));
      }
    }
    part("reboots", reboots);
    part("unreadable", s.unreadable.map((k) => el("li", {}, el("code", {}, k))));
    part("gone", s.disappeared.map((h) => el("li", {}, h)));
    draws += 1;
    document.body.dataset.draws = String(draws);
    document.body.dataset.readAt = String(s.read_at);
  }

  function failed(why) {
    $("error").hidden = false;
    $("error").textContent = "Cannot read the fleet: " + why;
  }

  // Reads the status; a change during a read reads once more after it.
  async function refresh() {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      const r = await fetch(api, { cache: "no-store", credentials: "same-origin" });
      const body = await r.json();
      if (r.ok) draw(body); else failed(body.error || r.statusText);
    } catch (e) {
      failed(String(e));
    } finally {
      reading = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  function live(word, text) {
    $("live").dataset.live = word;
    $("live").textContent = text;
  }

  // Without the event stream (a proxy that buffers it, the server
  // restarting), the page reads the status every 15 s until it is back.
  function poll(on) {
    if (on && !poller) poller = window.setInterval(refresh, 15000);
    if (!on && poller) {
      window.clearInterval(poller);
      poller = null;
    }
  }

  function connect() {
    const events = new EventSource("/events");
    events.addEventListener("change", refresh);
    events.onopen = () => {
      live("live", "live");
      poll(false);
    };
    events.onerror = () => {
      live("reconnecting", "reconnecting… (reading every 15 s meanwhile)");
      poll(true);
    };
  }

  $("commit").value = asked;
  refresh();
  connect();
})();
