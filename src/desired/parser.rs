//! What every kind's parser reads a table with: located errors, and the
//! common keys (`path`, `state`, `owner`/`group`/`mode`, `selinux`, argv
//! lists, tables of strings) read the same way for every kind.

use std::time::Duration;

use toml::de::DeValue;

use super::checks;
use super::schema::{self, Ctx, Fields, Sp};
use super::values::{Ensure, Meta, SelinuxParts};

/// Default mode of managed files.
pub(super) const DEFAULT_FILE_MODE: u32 = 0o644;
/// Default mode of managed directories.
pub(super) const DEFAULT_DIR_MODE: u32 = 0o755;
/// Default owner and group.
pub(super) const DEFAULT_OWNER: &str = "root";
/// Default time limit of one health-check attempt.
pub(super) const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default retries of a health check.
pub(super) const DEFAULT_CHECK_RETRIES: u32 = 3;
/// Default pause between health-check attempts.
pub(super) const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A name and its string value in an inline table, each with its span.
type Entry = (Sp<String>, Sp<String>);
/// The parts of `selinux = { ... }`.
const SELINUX_KEYS: &[&str] = &["user", "role", "type", "range"];
/// Default time limit of a `[[command]]` (and of each of its guards).
pub(super) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// What a kind's parser reads a table with: where problems go, and the
/// state directory (which no managed path may be in).
pub(crate) struct Parser<'c, 'a> {
    /// Where problems are reported.
    pub(crate) cx: &'c Ctx<'a>,
    /// driftless's own state directory.
    pub(crate) state_dir: &'c str,
}

impl Parser<'_, '_> {
    /// Runs a value check and reports its error at the value's span.
    pub(crate) fn checked<T>(
        &self,
        v: &Sp<String>,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        check(v.get_ref())
            .map_err(|msg| self.cx.error(&v.span(), msg))
            .ok()
    }

    pub(crate) fn path(&self, f: &Fields<'_, '_>) -> Option<String> {
        let p = f.required_string(self.cx, "path")?;
        self.checked(&p, |s| checks::host_path(s, self.state_dir))?;
        Some(p.into_inner())
    }

    pub(crate) fn ensure(&self, f: &Fields<'_, '_>) -> Option<Ensure> {
        match f.string(self.cx, "state") {
            None => Some(Ensure::Present),
            Some(s) => match s.get_ref().as_str() {
                "present" => Some(Ensure::Present),
                "absent" => Some(Ensure::Absent),
                other => {
                    self.cx.error(
                        &s.span(),
                        schema::unknown_state(other, &["present", "absent"]),
                    );
                    None
                }
            },
        }
    }

    pub(crate) fn meta(&self, f: &Fields<'_, '_>, default_mode: u32) -> Option<Meta> {
        let name = |key: &str| -> Option<String> {
            match f.string(self.cx, key) {
                None => Some(DEFAULT_OWNER.to_owned()),
                Some(s) => {
                    let text = s.get_ref();
                    let numeric = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                    // (uid_t)-1 means "leave unchanged" to chown: such an
                    // owner would be "changed" on every run, forever.
                    if numeric && text.parse::<u32>().map_or(true, |n| n == u32::MAX) {
                        self.cx.error(
                            &s.span(),
                            format!(
                                "{key} `{text}` is not a usable id (ids go up to 4294967294; 4294967295 means \"unchanged\" to chown)"
                            ),
                        );
                        return None;
                    }
                    let ok = !text.is_empty()
                        && text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c));
                    if ok {
                        Some(s.into_inner())
                    } else {
                        self.cx.error(
                            &s.span(),
                            format!("{key} `{}` is not a valid user or group name", s.get_ref()),
                        );
                        None
                    }
                }
            }
        };
        let owner = name("owner");
        let group = name("group");
        let mode = match f.string(self.cx, "mode") {
            None if f.raw("mode").is_some() => None,
            None => Some(default_mode),
            Some(m) => self.checked(&m, checks::mode),
        };
        let selinux = self.selinux(f);
        Some(Meta {
            owner: owner?,
            group: group?,
            mode: mode?,
            selinux: selinux?,
        })
    }

    /// The entries of an inline table of strings `key = { name = "value" }`:
    /// each name with its span, and its value with the value's span, and
    /// whether every value was a string (each one that is not is reported
    /// and left out). `None` when `key` is not a table (reported; `shape`
    /// says what it should look like). A missing `key` has no entries.
    pub(crate) fn string_table(
        &self,
        f: &Fields<'_, '_>,
        key: &str,
        shape: &str,
    ) -> Option<(Vec<Entry>, bool)> {
        let Some(v) = f.raw(key) else {
            return Some((Vec::new(), true));
        };
        let DeValue::Table(t) = v.get_ref() else {
            self.cx.error(
                &v.span(),
                format!(
                    "`{key}` must be {shape}, found {}",
                    schema::type_name(v.get_ref())
                ),
            );
            return None;
        };
        let mut ok = true;
        let mut out = Vec::new();
        for (k, val) in t.iter() {
            let name = Sp::new(k.span(), k.get_ref().to_string());
            match val.get_ref() {
                DeValue::String(text) => out.push((name, Sp::new(val.span(), text.to_string()))),
                other => {
                    self.cx.error(
                        &val.span(),
                        format!(
                            "`{key}.{}` must be a string, found {}",
                            name.get_ref(),
                            schema::type_name(other)
                        ),
                    );
                    ok = false;
                }
            }
        }
        Some((out, ok))
    }

    /// `selinux = { user = "...", role = "...", type = "...", range = "..." }`.
    pub(crate) fn selinux(&self, f: &Fields<'_, '_>) -> Option<SelinuxParts> {
        let mut parts = SelinuxParts::default();
        let (entries, mut ok) = self.string_table(
            f,
            "selinux",
            "a table such as { type = \"httpd_sys_content_t\" }",
        )?;
        for (key, text) in entries {
            let key_span = key.span();
            let key = key.into_inner();
            let key = key.as_str();
            let slot = match key {
                "user" => &mut parts.user,
                "role" => &mut parts.role,
                "type" => &mut parts.type_,
                "range" => &mut parts.range,
                other => {
                    let hint = crate::words::suggest(other, SELINUX_KEYS)
                        .map(|h| format!(" (did you mean `{h}`?)"))
                        .unwrap_or_default();
                    self.cx.error(
                        &key_span,
                        format!(
                            "`selinux.{other}` is not a part of an SELinux context: use user, role, type or range{hint}"
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            // A range holds `:`, `,`, `.` and `-` (s0-s0:c0.c1023); the
            // other parts are identifiers.
            let allowed = |c: char| {
                c.is_ascii_alphanumeric()
                    || c == '_'
                    || (key == "range" && ":,.-".contains(c))
                    || (key != "range" && ".-".contains(c))
            };
            if text.get_ref().is_empty() || !text.get_ref().chars().all(allowed) {
                self.cx.error(
                    &text.span(),
                    format!(
                        "`selinux.{key}` `{}` is not a valid SELinux {key}",
                        text.get_ref()
                    ),
                );
                ok = false;
                continue;
            }
            *slot = Some(text.into_inner());
        }
        ok.then_some(parts)
    }

    /// A list of strings that must hold a program (`command`, `unless`,
    /// `onlyif`).
    pub(crate) fn argv(&self, f: &Fields<'_, '_>, key: &str) -> Option<Option<Vec<String>>> {
        let Some(argv) = f.string_list(self.cx, key) else {
            return if f.raw(key).is_some() {
                None
            } else {
                Some(None)
            };
        };
        if argv.first().is_none_or(|a| a.get_ref().is_empty()) {
            let span = f.raw(key).map(toml::Spanned::span).unwrap_or_default();
            self.cx.error(
                &span,
                format!("`{key}` must list a program and its arguments, as [\"/usr/sbin/sysctl\", \"--system\"]"),
            );
            return None;
        }
        Some(Some(argv.into_iter().map(Sp::into_inner).collect()))
    }
}

impl Parser<'_, '_> {
    /// `validate = ["/usr/sbin/sshd", "-t", "-f", "%"]`: a program and its
    /// arguments, one of which is `%` (the staged file it checks); only
    /// where there is content to check.
    pub(crate) fn validator(
        &self,
        f: &Fields<'_, '_>,
        has_content: bool,
    ) -> Option<Option<Vec<String>>> {
        let argv = self.argv(f, "validate")?;
        let (Some(argv), Some(raw)) = (argv, f.raw("validate")) else {
            return Some(None);
        };
        if !has_content {
            self.cx.error(
                &raw.span(),
                "`validate` needs `content` or `source` to check",
            );
            return None;
        }
        if argv.iter().filter(|a| *a == VALIDATE_PLACEHOLDER).count() != 1 {
            self.cx.error(
                &raw.span(),
                "`validate` must have `%` as exactly one of its arguments, where the staged \
                 file goes: [\"/usr/sbin/sshd\", \"-t\", \"-f\", \"%\"]",
            );
            return None;
        }
        Some(Some(argv))
    }
}

/// The argument of `validate` that stands for the staged file.
pub(crate) const VALIDATE_PLACEHOLDER: &str = "%";

/// Checks a repo-relative path (`files/nginx.conf`): relative, normalised,
/// never climbing out of the repo.
pub(super) fn repo_relative_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') {
        return Err(format!(
            "source `{p}` must be a path relative to the config repo root, such as \"files/motd\""
        ));
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!(
            "source `{p}` must be normalised (no empty, `.` or `..` components)"
        ));
    }
    Ok(())
}

/// The repo line where inline content's first line is. TOML drops a newline
/// right after an opening `"""` or `'''`, so the text starts a line later.
pub(crate) fn inline_first_line(cx: &Ctx<'_>, span: &std::ops::Range<usize>) -> usize {
    let line = cx.origin(span).line;
    let raw = cx.text_at(span);
    let multi = raw.starts_with("\"\"\"") || raw.starts_with("'''");
    let after = raw.get(3..).unwrap_or("");
    if multi && (after.starts_with('\n') || after.starts_with("\r\n")) {
        line + 1
    } else {
        line
    }
}
