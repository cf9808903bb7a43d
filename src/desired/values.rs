//! The plain values resources are made of: present or absent, owner,
//! group and mode, SELinux parts, a file's content and where it comes
//! from. Shared by the kinds and the engine; they know of nothing else.

use serde::{Deserialize, Serialize};

/// Present or absent, for resources that can be removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    /// The resource must exist as declared.
    Present,
    /// The resource must not exist.
    Absent,
}

/// Owner, group and permission bits of a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// User name or numeric uid.
    pub owner: String,
    /// Group name or numeric gid.
    pub group: String,
    /// Permission bits, at most 0o7777.
    pub mode: u32,
    /// SELinux context parts that replace the policy's.
    #[serde(default, skip_serializing_if = "SelinuxParts::is_empty")]
    pub selinux: SelinuxParts,
}

impl Meta {
    /// `owner`, `group` and `mode`, with the policy's SELinux context.
    pub fn new(owner: impl Into<String>, group: impl Into<String>, mode: u32) -> Self {
        Self {
            owner: owner.into(),
            group: group.into(),
            mode,
            selinux: SelinuxParts::default(),
        }
    }
}

/// Parts of an SELinux context declared on a path (`selinux = { type =
/// "httpd_sys_content_t" }`): each part given replaces that part of the
/// context the policy gives the path, as Puppet's `seluser`, `selrole`,
/// `seltype` and `selrange` do. None given: the policy's context.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelinuxParts {
    /// SELinux user (`system_u`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Role (`object_r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Type (`httpd_sys_content_t`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// MLS/MCS range (`s0`, `s0:c1,c2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

impl SelinuxParts {
    /// Whether no part is declared.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.role.is_none() && self.type_.is_none() && self.range.is_none()
    }

    /// Every part of `context` (`user:role:type:range`), as declared parts:
    /// what puts a recorded label back exactly.
    pub fn of_context(context: &str) -> Self {
        let mut it = context.splitn(4, ':');
        let mut part = || it.next().filter(|p| !p.is_empty()).map(str::to_owned);
        Self {
            user: part(),
            role: part(),
            type_: part(),
            range: part(),
        }
    }

    /// The context these parts make of `base` (the policy's context for
    /// the path, or the label it has now); without a base, every part must
    /// be declared (the range may be left out, for a policy without MLS).
    pub fn apply(&self, base: Option<&str>) -> Result<String, String> {
        let base = match base {
            Some(b) => Self::of_context(b),
            None if self.user.is_some() && self.role.is_some() && self.type_.is_some() => {
                Self::default()
            }
            None => {
                return Err(
                    "the SELinux policy has no context for it, so `selinux` must give user, role and type (and range)"
                        .into(),
                );
            }
        };
        let pick = |mine: &Option<String>, theirs: Option<String>| mine.clone().or(theirs);
        let parts = [
            pick(&self.user, base.user),
            pick(&self.role, base.role),
            pick(&self.type_, base.type_),
            pick(&self.range, base.range),
        ];
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        if parts.len() < 3 {
            return Err(format!(
                "`{}` is not a whole SELinux context (user:role:type[:range])",
                parts.join(":")
            ));
        }
        Ok(parts.join(":"))
    }
}

/// The bytes a file must hold, hashed once when they are made: every run
/// compares them with the host by hash, and the hash is all a no-op needs.
/// A desired state read back from the state directory carries the hash
/// only ([`Content::stored`]); the bytes of the files that are to change
/// are filled in before planning (`converge::hydrate`), from the object
/// store that holds every content by its hash.
/// How much of a regular file's content driftless owns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentRule {
    /// Its bytes are exactly the declared ones.
    #[default]
    Exact,
    /// Written when missing, never changed after (`replace = false`):
    /// a file an admin or the application edits once it exists.
    CreateOnly,
    /// Never written: owner, group, mode and label of a file that exists
    /// (a `[[file]]` without `content` or `source`).
    Untouched,
}

impl ContentRule {
    /// The default: the declared bytes, exactly.
    pub(crate) fn is_exact(&self) -> bool {
        *self == ContentRule::Exact
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    sha256: [u8; 32],
    bytes: Option<Vec<u8>>,
}

impl Content {
    /// Takes the bytes and hashes them.
    pub fn new(bytes: Vec<u8>) -> Self {
        use sha2::Digest;
        let sha256 = sha2::Sha256::digest(&bytes).into();
        Self {
            sha256,
            bytes: Some(bytes),
        }
    }

    /// A content known by its hash, its bytes kept elsewhere.
    pub fn stored(sha256: [u8; 32]) -> Self {
        Self {
            sha256,
            bytes: None,
        }
    }

    /// The bytes, when they are loaded.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.bytes.as_deref()
    }

    /// Their SHA-256.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Loads the bytes of a stored content; they must have its hash.
    pub fn fill(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let loaded = Self::new(bytes);
        if loaded.sha256 != self.sha256 {
            return Err(format!(
                "content {} came back with another hash",
                hex::encode(self.sha256)
            ));
        }
        *self = loaded;
        Ok(())
    }
}

impl Default for Content {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes().to_vec())
    }
}

/// Where a file's bytes come from, before templates are rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ContentSpec {
    /// Inline `content = "..."`.
    Inline(String),
    /// `source = "files/..."`, a repo-relative path.
    Source(String),
    /// `source = "https://..."` (or `http://`, `file://`) with its pinned
    /// `sha256`: known by hash while planning, its bytes fetched into the
    /// object store only when the host lacks them.
    Download {
        /// Where the bytes are fetched from.
        url: String,
        /// What they must hash to.
        sha256: [u8; 32],
    },
    /// Neither (only valid with `state = "absent"`).
    Nothing,
}

/// Durations written as text (`"5m"`) in the state directory.
pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::Deserialize;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::SelinuxParts;

    fn parts(
        user: Option<&str>,
        role: Option<&str>,
        t: Option<&str>,
        range: Option<&str>,
    ) -> SelinuxParts {
        SelinuxParts {
            user: user.map(str::to_owned),
            role: role.map(str::to_owned),
            type_: t.map(str::to_owned),
            range: range.map(str::to_owned),
        }
    }

    #[test]
    fn declared_parts_replace_the_policys_and_keep_the_rest() {
        let base = Some("system_u:object_r:httpd_sys_content_t:s0");
        assert_eq!(
            parts(None, None, Some("httpd_cache_t"), None).apply(base),
            Ok("system_u:object_r:httpd_cache_t:s0".into())
        );
        // A range holds colons of its own.
        assert_eq!(
            parts(Some("unconfined_u"), None, None, Some("s0-s0:c0.c1023")).apply(base),
            Ok("unconfined_u:object_r:httpd_sys_content_t:s0-s0:c0.c1023".into())
        );
        assert_eq!(
            parts(None, None, Some("etc_t"), None).apply(Some("system_u:object_r:x_t:s0:c1,c2")),
            Ok("system_u:object_r:etc_t:s0:c1,c2".into())
        );
    }

    #[test]
    fn without_a_base_every_part_but_the_range_is_needed() {
        assert!(parts(None, None, Some("etc_t"), None).apply(None).is_err());
        assert_eq!(
            parts(Some("system_u"), Some("object_r"), Some("etc_t"), None).apply(None),
            Ok("system_u:object_r:etc_t".into())
        );
    }

    #[test]
    fn a_recorded_context_is_put_back_as_it_was() {
        for c in [
            "unconfined_u:object_r:user_tmp_t:s0",
            "system_u:object_r:etc_t:s0:c1,c2",
        ] {
            assert_eq!(SelinuxParts::of_context(c).apply(None), Ok(c.to_owned()));
        }
    }
}
