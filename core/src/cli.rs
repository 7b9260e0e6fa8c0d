//! The LIB-ZC command-line convention: `-key value`, `--flag` (= `yes`), `-config FILE`, positionals.

use std::path::PathBuf;

use crate::config::{Config, Origin};
use crate::error::{Error, ErrorKind, Result, quoted};

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// `-key value` and `--flag` settings (highest precedence).
    pub overrides: Config,
    /// `-config FILE` arguments, in order (later wins over earlier).
    pub config_files: Vec<PathBuf>,
    /// Everything else, in order (`--` ends option parsing).
    pub positional: Vec<String>,
}

impl CommandLine {
    /// Parses arguments (without argv[0]).
    ///
    /// # Errors
    /// `-key` as the last argument, without a value.
    pub fn parse<I, S>(args: I) -> Result<CommandLine>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = CommandLine::default();
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            if arg == "--" {
                out.positional.extend(args.by_ref());
                break;
            }
            if let Some(flag) = arg.strip_prefix("--") {
                out.overrides
                    .set_with_origin(flag, "yes", Origin::CommandLine);
            } else if let Some(key) = arg.strip_prefix('-').filter(|k| !k.is_empty()) {
                let value = args.next().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Usage,
                        format!("option {} needs a value", quoted(&arg)),
                    )
                })?;
                if key == "config" {
                    out.config_files.push(PathBuf::from(value));
                } else {
                    out.overrides
                        .set_with_origin(key, &value, Origin::CommandLine);
                }
            } else {
                out.positional.push(arg);
            }
        }
        Ok(out)
    }

    /// The effective config of a server: `server-config-path/*.gcf` < `-config` files (in
    /// order) < command line (SPEC §2).
    ///
    /// # Errors
    /// A config file that cannot be read or parsed.
    pub fn server_config(&self) -> Result<Config> {
        let globals = match self
            .overrides
            .get("server-config-path")
            .filter(|d| !d.is_empty())
        {
            Some(dir) => crate::config::load_globals(dir.as_ref())?,
            None => Config::new(),
        };
        let files = self
            .config_files
            .iter()
            .map(|file| Config::load_file(file))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::config::layered(&globals, &files, &self.overrides))
    }
}

/// The program name from `argv[0]`: its last path component (`/usr/sbin/smtpd` gives
/// `smtpd`), or `default` when there is none. Computed once, for the log ident and usage.
pub fn program_name(argv0: Option<&std::ffi::OsStr>, default: &str) -> String {
    argv0
        .and_then(|a0| std::path::Path::new(a0).file_name())
        .map_or_else(|| default.to_owned(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn lib_zc_convention() {
        let cl = CommandLine::parse([
            "MASTER",
            "-server-service",
            "a:i5",
            "--debug",
            "-config",
            "x.cf",
            "pos",
            "-config",
            "y.cf",
        ])
        .unwrap();
        assert_eq!(cl.positional, ["MASTER", "pos"]);
        assert_eq!(cl.overrides.get("server-service"), Some("a:i5"));
        assert_eq!(cl.overrides.get("debug"), Some("yes"));
        assert_eq!(
            cl.config_files,
            [PathBuf::from("x.cf"), PathBuf::from("y.cf")]
        );
        assert_eq!(cl.overrides.origin("debug"), Some(&Origin::CommandLine));
    }

    #[test]
    fn double_dash_ends_options_and_lone_dash_is_positional() {
        let cl = CommandLine::parse(["-", "--", "-x", "--y"]).unwrap();
        assert_eq!(cl.positional, ["-", "-x", "--y"]);
        assert!(cl.overrides.is_empty());
    }

    #[test]
    fn missing_value_is_an_error() {
        let err = CommandLine::parse(["-C"]).unwrap_err().to_string();
        assert_eq!(err, "option \"-C\" needs a value");
    }

    #[test]
    fn precedence_cli_over_config_files_over_gcf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("g.gcf"), "a = gcf\nb = gcf\nc = gcf\nd = gcf\n").unwrap();
        fs::write(p.join("one.cf"), "b = one\nc = one\n").unwrap();
        fs::write(p.join("two.cf"), "c = two\n").unwrap();
        let s = |path: std::path::PathBuf| path.to_str().unwrap().to_owned();
        let args = [
            "MASTER".into(),
            "-server-config-path".into(),
            s(p.to_path_buf()),
            "-config".into(),
            s(p.join("one.cf")),
            "-config".into(),
            s(p.join("two.cf")),
            "-d".into(),
            "cli".to_owned(),
        ];
        let c = CommandLine::parse(args).unwrap().server_config().unwrap();
        assert_eq!(
            [c.get("a"), c.get("b"), c.get("c"), c.get("d")],
            [Some("gcf"), Some("one"), Some("two"), Some("cli")]
        );
    }

    #[test]
    fn program_name_is_the_basename_of_argv0() {
        use std::ffi::OsStr;
        let name = |a0: Option<&str>| program_name(a0.map(OsStr::new), "server");
        assert_eq!(name(Some("/usr/sbin/smtpd")), "smtpd");
        assert_eq!(name(Some("echo")), "echo");
        assert_eq!(name(Some("/")), "server");
        assert_eq!(name(Some("")), "server");
        assert_eq!(name(None), "server");
    }

    #[test]
    fn missing_config_file_names_it() {
        let cl = CommandLine::parse(["-config", "/no/such.cf"]).unwrap();
        let err = cl.server_config().unwrap_err().to_string();
        assert!(err.contains("/no/such.cf"), "{err}");
    }
}
