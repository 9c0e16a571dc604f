//! Container paths: normalising them and deciding when one mount would hide another.

/// Longest path accepted.
const MAX_PATH_LEN: usize = 512;

/// Paths the container runtime itself mounts. Mounting over them (or over a parent of
/// them) is how several runtime escapes worked, so no input or workspace may go there.
pub const RUNTIME_PATHS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Where the size-limited writable `/tmp` is mounted.
pub const TMP_PATH: &str = "/tmp";

/// Normalises an absolute container path: collapses repeated slashes and `.` segments and
/// drops a trailing slash. Refuses relative paths, `..`, control characters and long paths,
/// with a message saying what to write instead.
pub fn normalize(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("{raw:?} is not absolute; write a path starting with '/'"));
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(format!("the path is longer than {MAX_PATH_LEN} characters"));
    }
    if raw.chars().any(char::is_control) {
        return Err("the path contains control characters; remove them".to_owned());
    }
    let mut segments = Vec::new();
    for segment in raw.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(format!("{raw:?} contains '..'; write the path without it")),
            other => segments.push(other),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// Whether `ancestor` is `path` or one of its parent directories. Both must be normalised.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || path.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether mounting at one path would hide the other, or be hidden by it.
pub fn overlaps(a: &str, b: &str) -> bool {
    is_within(a, b) || is_within(b, a)
}

/// The runtime-managed path that `path` sits at, under or above, if any.
pub fn runtime_path_clash(path: &str) -> Option<&'static str> {
    RUNTIME_PATHS.into_iter().find(|runtime| overlaps(path, runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redundant_slashes_and_dots_are_collapsed() {
        assert_eq!(normalize("//data/./in/"), Ok("/data/in".to_owned()));
        assert_eq!(normalize("/"), Ok("/".to_owned()));
    }

    #[test]
    fn relative_paths_and_parent_segments_are_refused() {
        assert!(normalize("data").is_err());
        assert!(normalize("").is_err());
        assert!(normalize("/data/../etc").is_err());
        assert!(normalize("/data\n").is_err());
    }

    #[test]
    fn overlap_follows_path_segments_not_string_prefixes() {
        assert!(overlaps("/workspace", "/workspace/in"));
        assert!(overlaps("/", "/tmp"));
        assert!(!overlaps("/workspace", "/workspace2"));
        assert_eq!(runtime_path_clash("/proc/sys"), Some("/proc"));
        assert_eq!(runtime_path_clash("/devices"), None);
    }
}
