//! `[[firewalld]]`: one firewalld zone's permanent configuration, the
//! file `/etc/firewalld/zones/ZONE.xml` that overrides the zone firewalld
//! ships (`/usr/lib/firewalld/zones/ZONE.xml`), written whole from a table
//! (target, services, ports, sources, interfaces, rich rules, masquerade)
//! as `firewall-cmd --permanent` would write it. Being a file, it is
//! snapshotted, rolled back, audited and pruned like every file: a zone the
//! repo drops is its shipped self again.
//!
//! A change takes effect when firewalld reloads: a declared
//! `[[service]] name = "firewalld.service"` is reloaded whenever a zone
//! changes (or is pruned), without a `reload_on` ([`KindDef::RELOADS`]), and
//! restarted by a rollback that puts a zone back. What firewalld runs is
//! observed too ([`KindDef::runtime_probe`]): a zone changed at runtime
//! only (`firewall-cmd` without `--permanent`) reloads it. New content is checked by
//! firewalld's own `firewall-offline-cmd --check-config` (on a copy of
//! `/etc/firewalld` holding it) before it replaces the old, where firewalld
//! is installed.

use std::net::IpAddr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::{Decl, Form, Identity, KindDef, Parsed, PathDecl, Prim, PrimKind, ReadContent};
use crate::desired::parser::Parser;
use crate::desired::schema::{Fields, Sp};
use crate::desired::values::Ensure;

/// Where the zones' permanent configuration lives.
const DIR: &str = "/etc/firewalld/zones";

/// The zones firewalld ships (RHEL's firewalld package): declaring one of
/// them needs no `create = true`.
const SHIPPED_ZONES: &[&str] = &[
    "block",
    "dmz",
    "drop",
    "external",
    "home",
    "internal",
    "nm-shared",
    "public",
    "trusted",
    "work",
];

/// The longest zone name firewalld takes (its nftables chain names are
/// built from it).
const ZONE_NAME_MAX: usize = 17;

/// The unit that reads the zones.
const UNIT: &str = "firewalld.service";

/// What a zone does with a packet no rule matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// firewalld's default (reject, with ICMP allowed).
    #[serde(rename = "default")]
    Default,
    /// Accept it.
    #[serde(rename = "ACCEPT")]
    Accept,
    /// Drop it silently.
    #[serde(rename = "DROP")]
    Drop,
    /// Reject it.
    #[serde(rename = "REJECT")]
    Reject,
}

impl Target {
    /// As the zone file writes it.
    fn xml(self) -> &'static str {
        match self {
            Target::Default => "default",
            Target::Accept => "ACCEPT",
            Target::Drop => "DROP",
            Target::Reject => "%%REJECT%%",
        }
    }
}

/// A port or range and its protocol (`8443/tcp`, `60000-61000/udp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// `8443` or `60000-61000`.
    pub port: String,
    /// `tcp`, `udp`, `sctp` or `dccp`.
    pub protocol: String,
}

/// One firewalld zone's permanent configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewalld {
    /// The zone (`public`).
    pub zone: String,
    /// Present (the override written) or absent (the shipped zone, or no
    /// zone at all, again).
    pub ensure: Ensure,
    /// What it does with a packet no rule matched.
    pub target: Target,
    /// Services allowed (`ssh`, `https`), in declared order.
    pub services: Vec<String>,
    /// Ports allowed.
    pub ports: Vec<Port>,
    /// Source addresses, networks (`10.0.0.0/8`), MACs or `ipset:NAME`
    /// bound to the zone.
    pub sources: Vec<String>,
    /// Interfaces bound to the zone.
    pub interfaces: Vec<String>,
    /// Rich rules, in firewalld's rule language.
    pub rich_rules: Vec<String>,
    /// Masquerading (source NAT) of what leaves through the zone.
    pub masquerade: bool,
    /// The zone is not one firewalld ships: it is created.
    pub create: bool,
}

fn path_of(zone: &str) -> String {
    format!("{DIR}/{zone}.xml")
}

impl Firewalld {
    /// The zone file's bytes, in firewalld's own layout; the rich rules
    /// were checked when parsed, so they translate.
    fn render(&self) -> Vec<u8> {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        s.push_str("<!-- Managed by driftless: local changes are overwritten. -->\n");
        if self.target == Target::Default {
            s.push_str("<zone>\n");
        } else {
            s.push_str(&format!("<zone target=\"{}\">\n", self.target.xml()));
        }
        for i in &self.interfaces {
            s.push_str(&format!("  <interface name=\"{}\"/>\n", escape(i)));
        }
        for src in &self.sources {
            s.push_str(&format!("  <source {}/>\n", source_attr(src)));
        }
        for svc in &self.services {
            s.push_str(&format!("  <service name=\"{}\"/>\n", escape(svc)));
        }
        for p in &self.ports {
            s.push_str(&format!(
                "  <port port=\"{}\" protocol=\"{}\"/>\n",
                p.port, p.protocol
            ));
        }
        if self.masquerade {
            s.push_str("  <masquerade/>\n");
        }
        // Every rule was translated once when parsed (a rule that does
        // not translate is a located error), so none is left out here.
        for xml in self.rich_rules.iter().filter_map(|r| rich_rule_xml(r).ok()) {
            s.push_str(&xml);
        }
        s.push_str("</zone>\n");
        s.into_bytes()
    }
}

impl Identity for Firewalld {
    fn key(&self) -> &str {
        &self.zone
    }

    fn path(&self) -> Option<String> {
        Some(path_of(&self.zone))
    }
}

/// The validator of a zone file: firewalld's own checker, run on a copy of
/// `/etc/firewalld` (under the converge's root) holding the staged file
/// under its zone's name, which is the staged name without driftless's
/// temporary suffix. Without firewalld installed nothing reads the file,
/// and there is nothing to check it with.
static VALIDATE: LazyLock<Vec<String>> = LazyLock::new(|| {
    let script = format!(
        r#"set -eu
staged=$1
name=${{staged##*/}}; name=${{name#.}}; name=${{name%%{marker}*}}
command -v firewall-offline-cmd >/dev/null 2>&1 || exit 0
etc=${{DRIFTLESS_ROOT:-}}/etc/firewalld
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
if [ -d "$etc" ]; then cp -R "$etc/." "$d/"; fi
mkdir -p "$d/zones"
cp "$staged" "$d/zones/$name"
firewall-offline-cmd --system-config "$d" --check-config"#,
        marker = crate::durable::TEMP_MARKER
    );
    vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        script,
        "driftless-firewalld-check".to_owned(),
        crate::desired::parser::VALIDATE_PLACEHOLDER.to_owned(),
    ]
});

/// The probe of a zone's running configuration: firewalld's runtime view
/// of the zone against its permanent view, the first line (the zone's name,
/// and whether it is active) and the interfaces (NetworkManager binds them
/// at runtime) left out. It runs only while systemd says firewalld runs;
/// a view firewalld does not give is exit 3 (could not tell), never two
/// empty views read as equal. Two `firewall-cmd` per zone and converge.
const PROBE: &str = r#"command -v firewall-cmd >/dev/null 2>&1 || exit 0
zone=$1
runtime=$(firewall-cmd --zone="$zone" --list-all) || exit 3
permanent=$(firewall-cmd --permanent --zone="$zone" --list-all) || exit 3
view() { printf '%s\n' "$1" | sed -e 1d -e '/^ *interfaces:/d'; }
[ "$(view "$runtime")" = "$(view "$permanent")" ] || exit 1"#;

impl KindDef for Firewalld {
    type Spec = Self;
    const KEYS: &'static [&'static str] = &[
        "zone",
        "state",
        "create",
        "target",
        "services",
        "ports",
        "sources",
        "interfaces",
        "rich_rules",
        "masquerade",
        "prune",
    ];
    const PRIM: PrimKind = PrimKind::Path(Form::File);
    const RELOADS: Option<&'static str> = Some(UNIT);

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let create = f.bool(p.cx, "create").is_some_and(Sp::into_inner);
        let zone = f.required_string(p.cx, "zone").and_then(|z| {
            p.checked(&z, |z| zone_name(z, create))
                .map(|()| z.into_inner())
        });
        let ensure = p.ensure(f);
        let target = target(p, f);
        let services = list(p, f, "services", service_name);
        let ports = list(p, f, "ports", port);
        let sources = list(p, f, "sources", |s| source(s).map(|_| s.to_owned()));
        let interfaces = list(p, f, "interfaces", interface_name);
        let rich_rules = list(p, f, "rich_rules", |r| {
            rich_rule_xml(r).map(|_| r.trim().to_owned())
        });
        let masquerade = f.bool(p.cx, "masquerade").is_some_and(Sp::into_inner);
        Some(Parsed::plain(Firewalld {
            zone: zone?,
            ensure: ensure?,
            target: target?,
            services: services?,
            ports: ports?,
            sources: sources?,
            interfaces: interfaces?,
            rich_rules: rich_rules?,
            masquerade,
            create,
        }))
    }

    fn resolve(spec: &Self, _: &mut dyn ReadContent, _: &Decl) -> Option<Self> {
        Some(spec.clone())
    }

    fn lower(&self) -> Prim<'_> {
        Prim::Path(PathDecl::generated(
            path_of(&self.zone),
            self.ensure,
            self.render(),
            Some(VALIDATE.as_slice()),
        ))
    }

    fn runtime_probe(&self) -> Option<Vec<String>> {
        Some(
            [
                "/bin/sh",
                "-c",
                PROBE,
                "driftless-firewalld-runtime",
                &self.zone,
            ]
            .map(str::to_owned)
            .to_vec(),
        )
    }

    fn absent(key: &str) -> Option<Self> {
        Some(Firewalld {
            zone: key.to_owned(),
            ensure: Ensure::Absent,
            target: Target::Default,
            services: Vec::new(),
            ports: Vec::new(),
            sources: Vec::new(),
            interfaces: Vec::new(),
            rich_rules: Vec::new(),
            masquerade: false,
            create: false,
        })
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(path_of(key))
    }
}

/// `target`: `default` (when not given), `ACCEPT`, `DROP` or `REJECT`.
fn target(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Target> {
    let Some(t) = f.string(p.cx, "target") else {
        return Some(Target::Default);
    };
    match t.get_ref().as_str() {
        "default" => Some(Target::Default),
        "ACCEPT" => Some(Target::Accept),
        "DROP" => Some(Target::Drop),
        "REJECT" | "%%REJECT%%" => Some(Target::Reject),
        other => {
            p.cx.error(
                &t.span(),
                format!(
                    "target `{other}` is not one firewalld knows: \"default\", \"ACCEPT\", \"DROP\" or \"REJECT\""
                ),
            );
            None
        }
    }
}

/// A list of strings, each checked by `check` at its own place (every
/// problem reported); empty when not given.
fn list<T>(
    p: &Parser<'_, '_>,
    f: &Fields<'_, '_>,
    key: &str,
    check: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    if f.raw(key).is_none() {
        return Some(Vec::new());
    }
    let items = f.string_list(p.cx, key)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in &items {
        match p.checked(item, &check) {
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A zone name firewalld takes; one it does not ship needs `create`.
fn zone_name(zone: &str, create: bool) -> Result<(), String> {
    let ok = !zone.is_empty()
        && zone.len() <= ZONE_NAME_MAX
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !ok {
        return Err(format!(
            "firewalld zone name `{zone}` is malformed (letters, digits, - and _, at most {ZONE_NAME_MAX})"
        ));
    }
    if !create && !SHIPPED_ZONES.contains(&zone) {
        return Err(format!(
            "firewalld zone `{zone}` does not exist: firewalld ships {}; to create a new zone, add `create = true`",
            SHIPPED_ZONES.join(", ")
        ));
    }
    Ok(())
}

/// A service name as firewalld names its service files.
fn service_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "firewalld service name `{name}` is malformed (letters, digits and - _ . + only, as \"https\")"
        ))
    }
}

/// `PORT/PROTOCOL` or `LOW-HIGH/PROTOCOL`.
fn port(s: &str) -> Result<Port, String> {
    let bad = || {
        format!(
            "port `{s}` is malformed: PORT/PROTOCOL or LOW-HIGH/PROTOCOL, as \"8443/tcp\" or \"60000-61000/udp\" (tcp, udp, sctp, dccp)"
        )
    };
    let (range, protocol) = s.split_once('/').ok_or_else(bad)?;
    if !["tcp", "udp", "sctp", "dccp"].contains(&protocol) {
        return Err(bad());
    }
    // Written plainly: no sign, no leading zero, 1 to 65535.
    let number = |n: &str| {
        n.parse::<u16>()
            .ok()
            .filter(|v| *v > 0 && v.to_string() == n)
    };
    let ok = match range.split_once('-') {
        None => number(range).is_some(),
        Some((lo, hi)) => matches!((number(lo), number(hi)), (Some(l), Some(h)) if l < h),
    };
    if ok {
        Ok(Port {
            port: range.to_owned(),
            protocol: protocol.to_owned(),
        })
    } else {
        Err(bad())
    }
}

/// What a source is: the attribute of its `<source/>` element.
#[derive(Debug, PartialEq, Eq)]
enum Source<'a> {
    /// An address or network.
    Address(&'a str),
    /// A MAC address.
    Mac(&'a str),
    /// An ipset, `ipset:NAME`.
    Ipset(&'a str),
}

/// A source: an IPv4 or IPv6 address or network, a MAC address, or
/// `ipset:NAME`.
fn source(s: &str) -> Result<Source<'_>, String> {
    if let Some(name) = s.strip_prefix("ipset:") {
        return service_name(name)
            .map(|_| Source::Ipset(name))
            .map_err(|_| format!("ipset name in source `{s}` is malformed"));
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_ok = prefix.is_none_or(|p| {
            p.parse::<u8>()
                .is_ok_and(|n| n <= max && p == n.to_string())
        });
        if prefix_ok {
            return Ok(Source::Address(s));
        }
    }
    let mac = s.len() == 17
        && s.split(':').count() == 6
        && s.split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    if mac {
        return Ok(Source::Mac(s));
    }
    Err(format!(
        "source `{s}` is not an address, a network (\"10.0.0.0/8\"), a MAC address or \"ipset:NAME\""
    ))
}

/// The attribute of a checked source's element: a zone's file writes a
/// MAC address as an `address` too (only a rich rule says `mac`).
fn source_attr(s: &str) -> String {
    match source(s) {
        Ok(Source::Ipset(n)) => format!("ipset=\"{}\"", escape(n)),
        // Checked when parsed: never an error here.
        Ok(Source::Address(_) | Source::Mac(_)) | Err(_) => {
            format!("address=\"{}\"", escape(s))
        }
    }
}

/// An interface name the kernel takes.
fn interface_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "interface name `{name}` is malformed (at most 15 letters, digits and - _ . @ :)"
        ))
    }
}

/// Text for an XML attribute or element.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The elements of a rich rule, and the attributes each takes: firewalld's
/// XML form writes each one as the element of the same name.
const RICH_ELEMENTS: &[(&str, &[&str])] = &[
    ("source", &["address", "mac", "ipset"]),
    ("destination", &["address", "ipset"]),
    ("service", &["name"]),
    ("port", &["port", "protocol"]),
    ("protocol", &["value"]),
    ("icmp-block", &["name"]),
    ("icmp-type", &["name"]),
    ("masquerade", &[]),
    ("forward-port", &["port", "protocol", "to-port", "to-addr"]),
    ("source-port", &["port", "protocol"]),
    ("log", &["prefix", "level"]),
    ("nflog", &["group", "prefix", "queue-size"]),
    ("audit", &[]),
    ("accept", &[]),
    ("reject", &["type"]),
    ("drop", &[]),
    ("mark", &["set"]),
];

/// Elements a `not` may invert.
const INVERTIBLE: &[&str] = &["source", "destination"];

/// Elements a `limit value="RATE"` may follow (it becomes their child).
const LIMITED: &[&str] = &["log", "nflog", "audit", "accept", "reject", "drop", "mark"];

/// One word of a rich rule: a bare word or `name="value"`.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// `source`, `not`, `accept`.
    Word(String),
    /// `address="10.0.0.0/8"`.
    Attr(String, String),
}

/// Splits a rich rule into words; values may be quoted ('…' or "…").
fn tokens(rule: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = rule.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                break;
            }
            word.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            out.push(Token::Word(word));
            continue;
        }
        chars.next();
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('"' | '\'')) => {
                chars.next();
                loop {
                    match chars.next() {
                        Some(c) if c == q => break,
                        Some(c) => value.push(c),
                        None => return Err(format!("the value of `{word}` has no closing {q}")),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        if word.is_empty() || value.is_empty() || value.contains(['\n', '\r']) {
            return Err(format!("`{word}={value}` is not an attribute"));
        }
        out.push(Token::Attr(word, value));
    }
    Ok(out)
}

/// The XML of a rich rule (`rule family="ipv4" source address="10.0.0.0/8"
/// service name="ssh" accept`), as firewalld writes it in a zone file; or
/// what is wrong with its shape. What firewalld alone knows (a service
/// that does not exist, a log level) its checker finds.
fn rich_rule_xml(rule: &str) -> Result<String, String> {
    let fail = |why: String| format!("rich rule `{rule}`: {why}");
    let mut toks = tokens(rule).map_err(fail)?.into_iter().peekable();
    if toks.next() != Some(Token::Word("rule".into())) {
        return Err(fail("must start with `rule`".into()));
    }
    let mut head = String::from("<rule");
    while let Some(Token::Attr(k, v)) = toks.peek() {
        if !["family", "priority"].contains(&k.as_str()) {
            return Err(fail(format!("`rule` takes family and priority, not `{k}`")));
        }
        head.push_str(&format!(" {k}=\"{}\"", escape(v)));
        toks.next();
    }
    let mut body = String::new();
    let mut elements = 0;
    let mut invert = false;
    let mut last: Option<&str> = None;
    while let Some(t) = toks.next() {
        let Token::Word(w) = t else {
            return Err(fail("an attribute must follow its element".into()));
        };
        if w == "not" {
            invert = true;
            continue;
        }
        if w == "limit" {
            let (Some(parent), Some(Token::Attr(k, v))) = (last, toks.next()) else {
                return Err(fail(
                    "`limit` takes value=\"RATE\" after an action or log".into(),
                ));
            };
            if !LIMITED.contains(&parent) || k != "value" {
                return Err(fail(format!("`limit` cannot follow `{parent}`")));
            }
            // The element just written gets the limit as its child.
            let closed = body.len() - "/>\n".len();
            body.truncate(closed);
            body.push_str(&format!("><limit value=\"{}\"/></{parent}>\n", escape(&v)));
            last = None;
            continue;
        }
        let Some((name, attrs)) = RICH_ELEMENTS.iter().find(|(n, _)| *n == w) else {
            return Err(fail(format!("`{w}` is not an element of a rich rule")));
        };
        body.push_str(&format!("    <{name}"));
        if invert {
            if !INVERTIBLE.contains(name) {
                return Err(fail(format!("`not` cannot invert `{name}`")));
            }
            body.push_str(" invert=\"True\"");
            invert = false;
        }
        while let Some(Token::Attr(k, v)) = toks.peek() {
            if !attrs.contains(&k.as_str()) {
                return Err(fail(format!("`{name}` takes no attribute `{k}`")));
            }
            body.push_str(&format!(" {k}=\"{}\"", escape(v)));
            toks.next();
        }
        body.push_str("/>\n");
        elements += 1;
        last = Some(name);
    }
    if invert {
        return Err(fail("`not` must precede source or destination".into()));
    }
    if elements == 0 {
        return Err(fail("says nothing to do".into()));
    }
    Ok(format!("  {head}>\n{body}  </rule>\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rich_rules_become_firewalld_xml() {
        assert_eq!(
            rich_rule_xml(
                r#"rule family="ipv4" source address="10.0.0.0/8" service name="ssh" log prefix="ssh " level="info" limit value="1/m" accept"#
            )
            .as_deref(),
            Ok("  <rule family=\"ipv4\">\n    <source address=\"10.0.0.0/8\"/>\n    <service name=\"ssh\"/>\n    <log prefix=\"ssh \" level=\"info\"><limit value=\"1/m\"/></log>\n    <accept/>\n  </rule>\n")
        );
        assert_eq!(
            rich_rule_xml("rule family=ipv6 not source address=::1 drop").as_deref(),
            Ok(
                "  <rule family=\"ipv6\">\n    <source invert=\"True\" address=\"::1\"/>\n    <drop/>\n  </rule>\n"
            )
        );
        for bad in [
            "",
            "accept",
            "rule",
            "rule family=\"ipv4\" teleport",
            "rule source adress=\"10.0.0.1\" accept",
            "rule source address=\"10.0.0.1 accept",
            "rule not accept",
            "rule limit value=\"1/m\" accept",
            "rule bogus=1 accept",
        ] {
            assert!(rich_rule_xml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_escaped() {
        let xml = rich_rule_xml(r#"rule log prefix="<&'>" accept"#).expect("rule");
        assert!(xml.contains("prefix=\"&lt;&amp;&apos;&gt;\""), "{xml}");
    }

    #[test]
    fn ports_sources_and_zones_are_checked() {
        assert!(port("8443/tcp").is_ok());
        assert!(port("60000-61000/udp").is_ok());
        for bad in [
            "8443",
            "0/tcp",
            "65536/tcp",
            "10-5/tcp",
            "08/tcp",
            "80/icmp",
            "a/tcp",
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert_eq!(source("10.0.0.0/8"), Ok(Source::Address("10.0.0.0/8")));
        assert_eq!(source("fd00::/64"), Ok(Source::Address("fd00::/64")));
        assert_eq!(
            source("52:54:00:aa:bb:cc"),
            Ok(Source::Mac("52:54:00:aa:bb:cc"))
        );
        assert_eq!(source("ipset:allowed"), Ok(Source::Ipset("allowed")));
        for bad in ["10.0.0.0/33", "10.0.0", "example.com", "ipset:"] {
            assert!(source(bad).is_err(), "{bad}");
        }
        assert!(zone_name("public", false).is_ok());
        assert!(zone_name("dmz2", false).is_err());
        assert!(zone_name("dmz2", true).is_ok());
        assert!(zone_name("a-very-long-zone-name", true).is_err());
    }

    #[test]
    fn the_validator_names_the_zone_from_the_staged_file() {
        // The script strips what `durable::temp_name` adds.
        let staged = crate::durable::temp_name("public.xml");
        assert!(staged.starts_with(".public.xml"), "{staged}");
        assert!(VALIDATE[2].contains(crate::durable::TEMP_MARKER));
        assert_eq!(
            VALIDATE
                .iter()
                .filter(|a| *a == crate::desired::parser::VALIDATE_PLACEHOLDER)
                .count(),
            1
        );
    }
}
