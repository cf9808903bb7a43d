//! `[[archive]]`: a tar archive (a release tarball) extracted into a
//! directory, pinned by its `sha256` and idempotent by it: the directory
//! holds a marker driftless writes with what it extracted, and a run whose
//! marker says the declared archive reads nothing else (no download, no
//! extraction). What is inside the tree is not compared: drift there is
//! not healed (as Ansible's `unarchive` and Puppet's `archive`).

use serde::{Deserialize, Serialize};

use super::{
    Decl, Identity, Kind, KindDef, Parsed, Prim, PrimKind, ReadContent, Relations, ResourceId,
};
use crate::desired::checks::{download_url, is_download, sha256_hex};
use crate::desired::parser::{DEFAULT_DIR_MODE, Parser, repo_relative_path};
use crate::desired::schema::{Fields, Sp};
use crate::desired::values::{Content, ContentSpec, Ensure, Meta};

/// Most leading components `strip_components` may drop: release tarballs
/// need one (`node_exporter-1.8.0.linux-amd64/…`), a few need two.
pub(crate) const MAX_STRIP_COMPONENTS: u32 = 16;

/// How the archive's bytes are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveFormat {
    /// A tar stream compressed with gzip (`.tar.gz`, `.tgz`).
    #[serde(rename = "tar.gz")]
    TarGz,
    /// An uncompressed tar stream (`.tar`).
    #[serde(rename = "tar")]
    Tar,
}

impl ArchiveFormat {
    /// The word a config repo writes.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Tar => "tar",
        }
    }

    /// The format a `format` value names.
    fn parse(word: &str) -> Result<Self, String> {
        match word {
            "tar.gz" | "tgz" => Ok(ArchiveFormat::TarGz),
            "tar" => Ok(ArchiveFormat::Tar),
            "tar.xz" | "txz" | "tar.bz2" | "tar.zst" => Err(format!(
                "format `{word}` is not supported: driftless extracts tar.gz and tar archives (recompress it, or use the project's .tar.gz release)"
            )),
            other => Err(format!(
                "format `{other}` is not an archive format driftless extracts: use \"tar.gz\" or \"tar\""
            )),
        }
    }

    /// The format a source's name ends with, if it says one.
    fn guess(source: &str) -> Option<Result<Self, String>> {
        let name = source.split(['?', '#']).next().unwrap_or(source);
        [
            ".tar.gz", ".tgz", ".tar", ".tar.xz", ".txz", ".tar.bz2", ".tar.zst",
        ]
        .iter()
        .find(|suffix| name.ends_with(*suffix))
        .map(|suffix| Self::parse(&suffix[1..]))
    }
}

/// An archive extracted into a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archive {
    /// The directory the archive's entries are extracted into (absolute,
    /// normalised); driftless creates it and replaces it whole.
    pub path: String,
    /// Present (extracted) or absent (the tree removed).
    pub ensure: Ensure,
    /// Where the archive comes from, as declared: a URL or a repo file.
    pub source: String,
    /// Whether `source` is a URL (downloaded when needed) rather than a
    /// repo file.
    pub download: bool,
    /// The archive's bytes (known by the pinned hash until they are
    /// needed: a run whose marker matches never loads them).
    #[serde(skip)]
    pub content: Content,
    /// How it is packed.
    pub format: ArchiveFormat,
    /// Leading path components dropped from each entry (entries with no
    /// more than that are skipped, as `tar --strip-components` does).
    pub strip_components: u32,
    /// Owner, group and mode of the directory; its entries are owned by
    /// the same owner and group and keep their own modes.
    pub meta: Meta,
}

/// An `[[archive]]` before its repo file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArchiveSpec {
    /// Host path of the directory.
    pub path: String,
    /// Present or absent.
    pub ensure: Ensure,
    /// The source: a download, or a repo file, with the pinned hash.
    pub content: ContentSpec,
    /// The declared `sha256`.
    pub sha256: [u8; 32],
    /// How it is packed.
    pub format: ArchiveFormat,
    /// Leading components dropped.
    pub strip_components: u32,
    /// Owner, group, mode of the directory.
    pub meta: Meta,
}

impl Identity for Archive {
    fn key(&self) -> &str {
        &self.path
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
}

impl Identity for ArchiveSpec {
    fn key(&self) -> &str {
        &self.path
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
}

impl KindDef for Archive {
    type Spec = ArchiveSpec;
    const KEYS: &'static [&'static str] = &[
        "path",
        "source",
        "sha256",
        "format",
        "strip_components",
        "owner",
        "group",
        "mode",
        "selinux",
        "state",
        "prune",
    ];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let path = p.path(f);
        let meta = p.meta(f, DEFAULT_DIR_MODE);
        let ensure = p.ensure(f);
        let source = f.required_string(p.cx, "source");
        let sha256 = f.string(p.cx, "sha256");
        let strip = f.unsigned(p.cx, "strip_components");
        let strip_components = match strip {
            Some(s) if *s.get_ref() > MAX_STRIP_COMPONENTS => {
                p.cx.error(
                    &s.span(),
                    format!("`strip_components` is at most {MAX_STRIP_COMPONENTS}"),
                );
                None
            }
            s => Some(s.map_or(0, Sp::into_inner)),
        };
        let source = source?;
        let format = format(p, f, &source);
        let (content, sha256) = pinned(p, source, sha256)?;
        Some(Parsed::plain(ArchiveSpec {
            path: path?,
            ensure: ensure?,
            content,
            sha256,
            format: format?,
            strip_components: strip_components?,
            meta: meta?,
        }))
    }

    fn resolve(spec: &ArchiveSpec, r: &mut dyn ReadContent, decl: &Decl) -> Option<Self> {
        let id = ResourceId::new(Kind::Archive, &spec.path);
        let present = spec.ensure == Ensure::Present;
        let (content, _) = r.read(&spec.content, false, present, &id, decl)?;
        // A repo file is read here: it must be the archive `sha256` pins.
        if present && content.sha256() != &spec.sha256 {
            r.problem(
                decl,
                format!(
                    "{id}: source `{}` has sha256 {}, but `sha256` says {}",
                    source_of(&spec.content),
                    hex::encode(content.sha256()),
                    hex::encode(spec.sha256)
                ),
            );
            return None;
        }
        Some(Archive {
            path: spec.path.clone(),
            ensure: spec.ensure,
            source: source_of(&spec.content).to_owned(),
            download: matches!(spec.content, ContentSpec::Download { .. }),
            content: if present {
                content
            } else {
                Content::stored(spec.sha256)
            },
            format: spec.format,
            strip_components: spec.strip_components,
            meta: spec.meta.clone(),
        })
    }

    fn relations(a: &ArchiveSpec) -> Relations<'_> {
        Relations {
            owned_by: (a.ensure == Ensure::Present).then_some(&a.meta),
            ..Relations::default()
        }
    }

    const PRIM: PrimKind = PrimKind::Archive;

    fn lower(&self) -> Prim<'_> {
        Prim::Archive(self)
    }

    fn stored_content(&self) -> Option<&Content> {
        (self.ensure == Ensure::Present).then_some(&self.content)
    }

    fn stored_content_mut(&mut self) -> Option<&mut Content> {
        (self.ensure == Ensure::Present).then_some(&mut self.content)
    }

    fn source_url(&self) -> Option<&str> {
        self.download.then_some(self.source.as_str())
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(key.to_owned())
    }

    fn absent(key: &str) -> Option<Self> {
        Some(Archive {
            path: key.to_owned(),
            ensure: Ensure::Absent,
            source: String::new(),
            download: false,
            content: Content::stored([0; 32]),
            format: ArchiveFormat::TarGz,
            strip_components: 0,
            meta: Meta::new("0", "0", DEFAULT_DIR_MODE),
        })
    }
}

/// The URL or repo path a content spec reads.
fn source_of(spec: &ContentSpec) -> &str {
    match spec {
        ContentSpec::Download { url, .. } => url,
        ContentSpec::Source(path) => path,
        ContentSpec::Inline(_) | ContentSpec::Nothing => "",
    }
}

/// `format`, or the one the source's name ends with; neither is an error
/// at `source`.
fn format(p: &Parser<'_, '_>, f: &Fields<'_, '_>, source: &Sp<String>) -> Option<ArchiveFormat> {
    match f.string(p.cx, "format") {
        Some(word) => p.checked(&word, ArchiveFormat::parse),
        None => match ArchiveFormat::guess(source.get_ref()) {
            Some(guessed) => guessed.map_err(|e| p.cx.error(&source.span(), e)).ok(),
            None => {
                p.cx.error(
                    &source.span(),
                    format!(
                        "cannot tell the format of `{}` from its name: add `format = \"tar.gz\"` or `format = \"tar\"`",
                        source.get_ref()
                    ),
                );
                None
            }
        },
    }
}

/// `source` and its required `sha256`: a download (`https://…`) or a repo
/// file (`files/…`), both pinned. A missing `sha256` is reported at
/// `source`, a malformed one at `sha256`.
fn pinned(
    p: &Parser<'_, '_>,
    source: Sp<String>,
    sha256: Option<Sp<String>>,
) -> Option<(ContentSpec, [u8; 32])> {
    let url = is_download(source.get_ref());
    let checked = if url {
        p.checked(&source, download_url)
    } else {
        p.checked(&source, repo_relative_path)
    };
    let Some(sha256) = sha256 else {
        p.cx.error(
            &source.span(),
            format!(
                "[[archive]] source `{}` needs `sha256 = \"<64 hex digits>\"`, the checksum of the archive (`sha256sum FILE`): it is what makes the extraction idempotent",
                source.get_ref()
            ),
        );
        return None;
    };
    let hash = p.checked(&sha256, sha256_hex)?;
    checked?;
    let spec = if url {
        ContentSpec::Download {
            url: source.into_inner(),
            sha256: hash,
        }
    } else {
        ContentSpec::Source(source.into_inner())
    };
    Some((spec, hash))
}
