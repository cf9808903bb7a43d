//! `[[file]]`: a regular file, its bytes (inline, from the repo, rendered from a template, or decrypted), owner, group, mode and SELinux context.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{
    Decl, Form, Identity, Kind, KindDef, Parsed, PathDecl, PathForm, Prim, PrimKind, ReadContent,
    Relations, ResourceId,
};
use crate::desired::checks::{download_url, is_download, sha256_hex};
use crate::desired::parser::{DEFAULT_FILE_MODE, Parser, inline_first_line, repo_relative_path};
use crate::desired::schema::{Fields, Sp};
use crate::desired::values::{Content, ContentRule, ContentSpec, Ensure, Meta};

/// A regular file with its final (read and rendered) content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Absolute, normalised path on the host.
    pub path: String,
    /// Present (with content and metadata) or absent.
    pub ensure: Ensure,
    /// The exact bytes the file must hold (empty when absent).
    #[serde(skip)]
    pub content: Content,
    /// Where the bytes are downloaded from when the host lacks them
    /// (`source = "https://…"`); `content` then holds the pinned hash
    /// until they are needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Ownership and mode.
    pub meta: Meta,
    /// Never show the content in diffs or logs.
    pub sensitive: bool,
    /// Whether the bytes are managed, written once, or left alone.
    #[serde(default, skip_serializing_if = "ContentRule::is_exact")]
    pub rule: ContentRule,
    /// The command that checks new content before it replaces the old;
    /// one argument is `%`, the staged file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Vec<String>>,
}

/// A `[[file]]` before its content is read and rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileSpec {
    /// Host path.
    pub path: String,
    /// Present or absent.
    pub ensure: Ensure,
    /// Content source.
    pub content: ContentSpec,
    /// Render with minijinja.
    pub template: bool,
    /// Ownership and mode.
    pub meta: Meta,
    /// No diffs or content in logs.
    pub sensitive: bool,
    /// Whether the bytes are managed, written once, or left alone.
    pub rule: ContentRule,
    /// The validator's argv (`%` is the staged file).
    pub validate: Option<Vec<String>>,
}

impl Identity for File {
    fn key(&self) -> &str {
        &self.path
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
}

impl Identity for FileSpec {
    fn key(&self) -> &str {
        &self.path
    }

    fn path(&self) -> Option<String> {
        Some(self.path.clone())
    }
}

impl KindDef for File {
    type Spec = FileSpec;
    const KEYS: &'static [&'static str] = &[
        "path",
        "source",
        "sha256",
        "content",
        "template",
        "owner",
        "group",
        "mode",
        "state",
        "sensitive",
        "replace",
        "validate",
        "selinux",
        "prune",
    ];

    fn parse(p: &Parser<'_, '_>, f: &Fields<'_, '_>) -> Option<Parsed<Self::Spec>> {
        let path = p.path(f);
        let meta = p.meta(f, DEFAULT_FILE_MODE);
        let ensure = p.ensure(f);
        let source = f.string(p.cx, "source");
        let content = f.string(p.cx, "content");
        let sha256 = f.string(p.cx, "sha256");
        let mut content_line = 0;
        let spec = match (source, content) {
            (Some(s), Some(c)) => {
                p.cx.error(&c.span(), "[[file]] takes `source` or `content`, not both");
                let _ = s;
                None
            }
            (Some(s), None) if is_download(s.get_ref()) => download(p, s, sha256),
            (Some(s), None) => {
                not_pinning(p, sha256.as_ref());
                p.checked(&s, repo_relative_path)
                    .map(|()| ContentSpec::Source(s.into_inner()))
            }
            (None, Some(c)) => {
                not_pinning(p, sha256.as_ref());
                content_line = inline_first_line(p.cx, &c.span());
                Some(ContentSpec::Inline(c.into_inner()))
            }
            // Neither: only owner, group, mode and label are managed.
            (None, None) => {
                not_pinning(p, sha256.as_ref());
                Some(ContentSpec::Nothing)
            }
        };
        let template = match f.bool(p.cx, "template") {
            Some(t) if *t.get_ref() && spec == Some(ContentSpec::Nothing) => {
                p.cx.error(&t.span(), "`template = true` needs `content` or `source`");
                true
            }
            // The pinned hash is of the bytes as downloaded: a rendering
            // of them would hash to something else.
            Some(t) if *t.get_ref() && matches!(spec, Some(ContentSpec::Download { .. })) => {
                p.cx.error(
                    &t.span(),
                    "`template = true` cannot render a download: its bytes are pinned by `sha256`",
                );
                true
            }
            t => t.is_some_and(Sp::into_inner),
        };
        let sensitive = f.bool(p.cx, "sensitive").is_some_and(Sp::into_inner);
        let rule = match (f.bool(p.cx, "replace"), &spec) {
            (Some(r), Some(ContentSpec::Nothing)) if !r.get_ref() => {
                p.cx.error(&r.span(), "`replace = false` needs `content` or `source`");
                None
            }
            (_, Some(ContentSpec::Nothing)) if ensure == Some(Ensure::Present) => {
                Some(ContentRule::Untouched)
            }
            (Some(r), _) if !r.get_ref() => Some(ContentRule::CreateOnly),
            _ => Some(ContentRule::Exact),
        };
        let validate = p.validator(f, spec.as_ref() != Some(&ContentSpec::Nothing));
        Some(Parsed {
            spec: FileSpec {
                path: path?,
                ensure: ensure?,
                content: spec?,
                template,
                meta: meta?,
                sensitive,
                rule: rule?,
                validate: validate?,
            },
            content_line,
            ref_origins: Vec::new(),
        })
    }

    fn resolve(spec: &FileSpec, r: &mut dyn ReadContent, decl: &Decl) -> Option<Self> {
        let id = ResourceId::new(Kind::File, &spec.path);
        let present = spec.ensure == Ensure::Present;
        let (content, secret) = r.read(&spec.content, spec.template, present, &id, decl)?;
        let source_url = match &spec.content {
            ContentSpec::Download { url, .. } => Some(url.clone()),
            _ => None,
        };
        // A secret's content, and what a template makes of secrets, never
        // shows in a diff, a log or JSON, whatever the file says.
        Some(File {
            path: spec.path.clone(),
            source_url,
            ensure: spec.ensure,
            content,
            meta: spec.meta.clone(),
            sensitive: spec.sensitive || secret,
            rule: spec.rule,
            validate: spec.validate.clone(),
        })
    }

    fn relations(f: &FileSpec) -> Relations<'_> {
        Relations {
            owned_by: (f.ensure == Ensure::Present).then_some(&f.meta),
            ..Relations::default()
        }
    }

    const PRIM: PrimKind = PrimKind::Path(Form::File);

    fn lower(&self) -> Prim<'_> {
        Prim::Path(PathDecl {
            path: Cow::Borrowed(&self.path),
            ensure: self.ensure,
            form: PathForm::File {
                content: Cow::Borrowed(&self.content),
                meta: Cow::Borrowed(&self.meta),
                sensitive: self.sensitive,
                rule: self.rule,
                validate: self.validate.as_deref(),
                source_url: self.source_url.as_deref(),
            },
            before_packages: false,
        })
    }

    fn stored_content(&self) -> Option<&Content> {
        Some(&self.content)
    }

    fn stored_content_mut(&mut self) -> Option<&mut Content> {
        Some(&mut self.content)
    }

    fn source_url(&self) -> Option<&str> {
        self.source_url.as_deref()
    }

    fn path_of_key(key: &str) -> Option<String> {
        Some(key.to_owned())
    }

    fn absent(key: &str) -> Option<Self> {
        Some(File {
            path: key.to_owned(),
            ensure: Ensure::Absent,
            content: Content::default(),
            source_url: None,
            meta: Meta::new("0", "0", 0o644),
            sensitive: false,
            rule: ContentRule::Exact,
            validate: None,
        })
    }
}

/// `source = "https://…"`: a download, which must be pinned by `sha256`
/// (reported at `source` when it is missing, at `sha256` when malformed).
fn download(
    p: &Parser<'_, '_>,
    source: Sp<String>,
    sha256: Option<Sp<String>>,
) -> Option<ContentSpec> {
    let url = p.checked(&source, download_url);
    let Some(sha256) = sha256 else {
        p.cx.error(
            &source.span(),
            format!(
                "source `{}` is a download: it needs `sha256 = \"<64 hex digits>\"`, the checksum the bytes must have (`sha256sum FILE`)",
                source.get_ref()
            ),
        );
        return None;
    };
    let hash = p.checked(&sha256, sha256_hex);
    url?;
    Some(ContentSpec::Download {
        url: source.into_inner(),
        sha256: hash?,
    })
}

/// `sha256` without a URL `source` pins nothing: reported at `sha256`.
fn not_pinning(p: &Parser<'_, '_>, sha256: Option<&Sp<String>>) {
    if let Some(s) = sha256 {
        p.cx.error(
            &s.span(),
            "`sha256` pins a download: it needs `source = \"https://…\"` (a repo file is pinned by its commit)",
        );
    }
}
