//! The process's own command line, and the environment variables that act like options.
//!
//! Every command records its command line (config.json's `command`, a resume's `resumed`) and
//! its paths as text, so an argument that is not UTF-8 could never be recorded or resumed from:
//! it is refused before anything runs ([`utf8_args`]), in one line that names it, instead of
//! panicking wherever `std::env::args` met it first.

use std::ffi::OsString;

use crate::error::Error;

/// The arguments, program name first, when every one of them is UTF-8.
pub fn utf8_args() -> Result<Vec<String>, Error> {
    check_utf8(std::env::args_os())
}

fn check_utf8(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, Error> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            arg.into_string().map_err(|bad| {
                Error::Usage(format!(
                    "argument {i} ({}) is not valid UTF-8: norma records its command line and \
                     paths as text (config.json), so rename the file or folder",
                    bad.to_string_lossy()
                ))
            })
        })
        .collect()
}

/// The command line as recorded in config.json (checked to be UTF-8 by `main` before any
/// command runs; lossy, never panicking, should that ever not hold).
pub fn recorded() -> Vec<String> {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The program as it was started (for a printed resume command).
pub fn program() -> String {
    recorded()
        .into_iter()
        .next()
        .unwrap_or_else(|| "xtask".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn a_non_utf8_argument_is_named_in_one_line() {
        let args = [
            OsString::from("xtask"),
            OsString::from("--out"),
            OsString::from_vec(b"runs/\xffbad".to_vec()),
        ];
        let err = check_utf8(args).unwrap_err().to_string();
        assert!(
            err.starts_with("argument 2 (runs/\u{fffd}bad) is not valid UTF-8"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let ok = check_utf8([OsString::from("xtask"), OsString::from("bench")]).unwrap();
        assert_eq!(ok, ["xtask", "bench"]);
    }
}
