//! Operating-system errors in words, for messages a person can act on.

/// An OS error in words, without Rust's "(os error N)" suffix: "permission denied".
pub fn reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        AlreadyExists => "already exists".into(),
        ReadOnlyFilesystem => "read-only file system".into(),
        StorageFull => "no space left on device".into(),
        IsADirectory => "is a directory".into(),
        NotADirectory => "not a directory".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_are_words_without_the_error_number() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(super::reason(&e), "permission denied");
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(super::reason(&e), "no such file or directory");
        let e = std::io::Error::from_raw_os_error(28);
        assert_eq!(super::reason(&e), "no space left on device");
    }
}
