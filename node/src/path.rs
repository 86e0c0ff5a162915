//! Paths into content, as people write them: `ID[/path]` or `NAME[/path]`, a content id or a
//! name followed by a path through directories. A name is resolved each time, so the path
//! follows the name to wherever it points now.

use std::fmt;
use std::str::FromStr;

use crate::error::ResolveError;
use crate::{ContentId, NAME_PREFIX, Name, Node, Resolved};

/// Where a [`ContentPath`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRoot {
    /// Fixed content.
    Id(ContentId),
    /// Whatever a name points at when it is resolved.
    Name(Name),
}

impl fmt::Display for ContentRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Name(name) => name.fmt(f),
        }
    }
}

/// `ID[/path]` or `NAME[/path]`: a root and a path through directories (`a/b/c`, empty for the
/// root itself; empty segments, as in `a//b` or a trailing `/`, are ignored).
///
/// ```
/// let p: cairn_node::ContentPath = format!("cairnname1{}/docs/a.txt", "ab".repeat(32)).parse()?;
/// assert!(matches!(p.root, cairn_node::ContentRoot::Name(_)));
/// assert_eq!(p.path, "docs/a.txt");
/// # Ok::<(), cairn_node::ResolveError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentPath {
    /// Where it starts.
    pub root: ContentRoot,
    /// The path from there, without leading or doubled `/`.
    pub path: String,
}

impl ContentPath {
    /// The last segment of the path, if it has one: the natural file name for what it leads to.
    pub fn file_name(&self) -> Option<&str> {
        self.path.rsplit('/').next().filter(|s| !s.is_empty())
    }
}

impl FromStr for ContentPath {
    type Err = ResolveError;

    fn from_str(s: &str) -> Result<Self, ResolveError> {
        // Space around the root is a copy-paste slip; a path's spaces may be part of a name.
        let s = s.trim_start();
        let (root, path) = s.split_once('/').unwrap_or((s, ""));
        let root = root.trim_end();
        let root = if root.starts_with(NAME_PREFIX) {
            ContentRoot::Name(root.parse()?)
        } else if root.starts_with(crate::CONTENT_ID_PREFIX) {
            ContentRoot::Id(root.parse()?)
        } else {
            let shown: String = root.chars().take(80).collect();
            return Err(ResolveError::Root(crate::printable(&shown)));
        };
        let path = path
            .split('/')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Ok(Self { root, path })
    }
}

impl fmt::Display for ContentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            self.root.fmt(f)
        } else {
            write!(f, "{}/{}", self.root, self.path)
        }
    }
}

impl Node {
    /// The content `path` leads to: its root name resolved (if it is a name), then its path
    /// followed through directories with [`Node::resolve`].
    pub async fn resolve_path(&self, path: &ContentPath) -> Result<Resolved, ResolveError> {
        let id = match path.root {
            ContentRoot::Id(id) => id,
            ContentRoot::Name(name) => self.resolve_name(name).await?,
        };
        Ok(self.resolve(id, &path.path).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_paths_parse_and_print() {
        let id = format!("cairn1{}", "ab".repeat(32));
        let name = format!("cairnname1{}", "cd".repeat(32));
        let p: ContentPath = id.parse().unwrap();
        assert!(matches!(p.root, ContentRoot::Id(_)));
        assert_eq!((p.path.as_str(), p.file_name()), ("", None));
        assert_eq!(p.to_string(), id);
        let p: ContentPath = format!("{name}//docs/a b.txt/").parse().unwrap();
        assert!(matches!(p.root, ContentRoot::Name(_)));
        assert_eq!(p.path, "docs/a b.txt");
        assert_eq!(p.file_name(), Some("a b.txt"));
        assert_eq!(p.to_string(), format!("{name}/docs/a b.txt"));
        let p: ContentPath = format!("{name}/").parse().unwrap();
        assert_eq!(p.path, "");

        let err = "bafyoops/x".parse::<ContentPath>().unwrap_err();
        assert!(matches!(err, ResolveError::Root(_)), "{err}");
        assert!(
            err.to_string().contains("should start with 'cairn1'"),
            "{err}"
        );
        let err = "cairn1abc".parse::<ContentPath>().unwrap_err();
        assert!(matches!(err, ResolveError::Id(_)), "{err}");
        assert!(err.to_string().contains("malformed content id"), "{err}");
        let err = "cairnname1xyz/a".parse::<ContentPath>().unwrap_err();
        assert!(matches!(err, ResolveError::Name(_)), "{err}");
        assert!(err.to_string().contains("not a cairn name"), "{err}");
        assert!("".parse::<ContentPath>().is_err());
    }
}
