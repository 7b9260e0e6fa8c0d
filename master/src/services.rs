//! Service definitions: one validated `NAME.cf` of the config dir, ready to bind and spawn.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zmaster_core::addr::{self, ServiceAddr};
use zmaster_core::config::{self, Config, ServiceFile};
use zmaster_core::error::quoted;

use crate::error::{Error, ErrorKind, Result};

pub use zmaster_core::bind::DEFAULT_BACKLOG;

pub(crate) mod process;

use process::Process;

/// One service the master runs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The `.cf` file name without extension.
    pub name: String,
    /// The `.cf` file (passed to children as `-config`).
    pub cf_path: PathBuf,
    /// `server-command` as written (exec'd with PATH lookup).
    pub command: PathBuf,
    /// `server-service`, parsed.
    pub addrs: Vec<ServiceAddr>,
    /// `server-proc-count` (0 = bind but start nothing).
    pub proc_count: usize,
    /// `run-chdir` (alias `master-chdir`), applied in the child.
    pub chdir: Option<PathBuf>,
    /// `run-chroot` (alias `master-chroot`), applied in the child.
    pub chroot: Option<PathBuf>,
    /// `run-user`/`run-group` and the rlimits, applied in the child after chroot/chdir.
    pub process: Process,
    /// `server-listen-backlog`.
    pub backlog: i32,
    /// `server-unix-mode`: chmod for unix socket files.
    pub unix_mode: Option<u32>,
    /// `server-give-up-after`: young deaths in a row before the service is `failed` (0 = never).
    pub give_up_after: u32,
}

/// Loads every `dir/*.cf` as a service file (LIB-ZC's `zmaster_load_config_from_dir`), with
/// the dir's `*.gcf` globals merged under each.
///
/// # Errors
/// The dir or a file cannot be read, or a line is malformed (`file:line`).
pub fn load_config_from_dir(dir: &Path) -> Result<Vec<ServiceFile>> {
    let loaded = config::load_dir(dir)?;
    Ok(loaded
        .services
        .into_iter()
        .map(|mut file| {
            file.config = config::layered(&loaded.globals, [&file.config], &Config::new());
            file
        })
        .collect())
}

fn required<'a>(file: &'a ServiceFile, key: &str) -> Result<&'a str> {
    match file.config.get(key) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::new(
            ErrorKind::Config,
            format!("{}: missing required key {key}", file.path.display()),
        )),
    }
}

/// Validates service files into services: required keys, typed values, addresses, and no
/// address used twice anywhere.
///
/// # Errors
/// The first problem found, naming the file (and line or entry).
pub fn validate(files: &[ServiceFile]) -> Result<Vec<Service>> {
    let mut services: Vec<Service> = Vec::new();
    for file in files {
        let config = &file.config;
        let command = PathBuf::from(required(file, "server-command")?);
        let service_text = required(file, "server-service")?;
        let at_key = |e: zmaster_core::Error, key: &str| {
            let e = e.at_location(config.location(key));
            if e.location().is_some() {
                Error::from(e)
            } else {
                Error::new(ErrorKind::Config, format!("{}: {e}", file.path.display()))
            }
        };
        let addrs =
            addr::parse_service_list(service_text).map_err(|e| at_key(e, "server-service"))?;
        let proc_count = config.get_int_in("server-proc-count", 1, 0, 4096)? as usize;
        let backlog = config.get_int_in(
            "server-listen-backlog",
            i64::from(DEFAULT_BACKLOG),
            1,
            65535,
        )? as i32;
        let unix_mode = config.get_octal_mode("server-unix-mode")?;
        let give_up_after =
            config.get_int_in("server-give-up-after", 0, 0, i64::from(u32::MAX))? as u32;
        let at = |key: &str| located(config, file, key);
        let chroot = process::aliased_path(config, "run-chroot", "master-chroot", &at)?;
        let chdir = process::aliased_path(config, "run-chdir", "master-chdir", &at)?;
        let process = process::parse(config, &at)?;
        let config_error = |key: &str, why: String| {
            Error::new(
                ErrorKind::Config,
                format!("{}: {key}: {why}", located(config, file, key)),
            )
        };
        if let Some((key, root)) = &chroot {
            if !root.is_dir() {
                return Err(config_error(
                    key,
                    format!("{} is not a directory", root.display()),
                ));
            }
            if !nix::unistd::geteuid().is_root() {
                return Err(config_error(
                    key,
                    "chroot needs the master to run as root".into(),
                ));
            }
        }
        let chroot = chroot.map(|(_, root)| root);
        if let Some((key, dir)) = &chdir {
            // After a chroot the dir is looked up inside it.
            let seen = match &chroot {
                Some(root) => root.join(dir.strip_prefix("/").unwrap_or(dir)),
                None => dir.clone(),
            };
            if !seen.is_dir() {
                return Err(config_error(
                    key,
                    format!("{} is not a directory", seen.display()),
                ));
            }
        }
        let chdir = chdir.map(|(_, dir)| dir);
        // A relative command with a `/` is relative to the master's cwd (SPEC §4), not to
        // `master-chdir`, which the child enters before exec.
        let command =
            if command.is_relative() && command.components().count() > 1 && chroot.is_none() {
                std::path::absolute(&command).unwrap_or(command)
            } else {
                command
            };
        if chroot.is_none() && proc_count > 0 {
            check_command(&command).map_err(|why| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}: server-command {}: {why}",
                        located(config, file, "server-command"),
                        quoted(&command.to_string_lossy())
                    ),
                )
            })?;
        }
        for sa in &addrs {
            if let Some(other) = services
                .iter()
                .find(|s| s.addrs.iter().any(|o| o.addr.conflicts_with(&sa.addr)))
            {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}: address {} is already used by service {} ({})",
                        located(config, file, "server-service"),
                        sa.addr,
                        other.name,
                        other.cf_path.display()
                    ),
                ));
            }
        }
        services.push(Service {
            name: file.name.clone(),
            cf_path: file.path.clone(),
            command,
            addrs,
            proc_count,
            chdir,
            chroot,
            process,
            backlog,
            unix_mode,
            give_up_after,
        });
    }
    Ok(services)
}

fn located(config: &Config, file: &ServiceFile, key: &str) -> String {
    config
        .location(key)
        .map_or_else(|| file.path.display().to_string(), ToString::to_string)
}

/// Checks that `command` names an executable file, with PATH lookup for bare names.
fn check_command(command: &Path) -> std::result::Result<(), String> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if command.components().count() > 1 || command.is_absolute() {
        return if executable(command) {
            Ok(())
        } else {
            Err("not an executable file".into())
        };
    }
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|dir| executable(&dir.join(command))) {
        Ok(())
    } else {
        Err("not found in PATH".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    fn load(dir: &Path) -> Result<Vec<Service>> {
        validate(&load_config_from_dir(dir)?)
    }

    #[test]
    fn valid_dir_with_globals() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "all.gcf", "server-proc-count = 3\n");
        write(
            dir.path(),
            "a.cf",
            "server-command = /bin/sh\nserver-service = a://127.0.0.1:7001\n",
        );
        write(
            dir.path(),
            "b.cf",
            "server-command = sh\nserver-service = local:/tmp/b.sock\nserver-proc-count = 0\nserver-unix-mode = 0600\n",
        );
        let s = load(dir.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].proc_count, s[1].proc_count), (3, 0));
        assert_eq!(s[1].unix_mode, Some(0o600));
        assert_eq!(s[0].backlog, DEFAULT_BACKLOG);
    }

    #[test]
    fn give_up_after_comes_from_the_cf_over_the_gcf_under_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let cf = "server-command = /bin/sh\nserver-service = a://127.0.0.1:7001\n";
        write(dir.path(), "web.cf", cf);
        let give_up = |overrides: &Config| -> Result<u32> {
            let mut files = load_config_from_dir(dir.path())?;
            for file in &mut files {
                file.config.merge(overrides);
            }
            Ok(validate(&files)?[0].give_up_after)
        };
        let none = Config::new();
        assert_eq!(give_up(&none).unwrap(), 0, "default: never");
        write(dir.path(), "all.gcf", "server-give-up-after = 4\n");
        assert_eq!(give_up(&none).unwrap(), 4);
        write(
            dir.path(),
            "web.cf",
            &format!("{cf}server-give-up-after = 7\n"),
        );
        assert_eq!(give_up(&none).unwrap(), 7);
        let mut cli = Config::new();
        cli.set("server-give-up-after", "9");
        assert_eq!(give_up(&cli).unwrap(), 9);
        write(
            dir.path(),
            "web.cf",
            &format!("{cf}server-give-up-after = often\n"),
        );
        let e = give_up(&none).unwrap_err().to_string();
        assert!(e.contains("server-give-up-after"), "{e}");
        write(
            dir.path(),
            "web.cf",
            &format!("{cf}server-give-up-after = -1\n"),
        );
        assert!(give_up(&none).is_err());
    }

    #[test]
    fn missing_keys_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x.cf", "server-service = 127.0.0.1:7001\n");
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("x.cf") && err.contains("server-command"),
            "{err}"
        );
        write(dir.path(), "x.cf", "server-command = /bin/sh\n");
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("x.cf") && err.contains("server-service"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_located() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "x.cf",
            "server-command = /bin/sh\nserver-service = echo://127.0.0.1:99999\n",
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("x.cf:2") && err.contains("\"echo://127.0.0.1:99999\""),
            "{err}"
        );
        write(
            dir.path(),
            "x.cf",
            "server-command = /bin/sh\nserver-service = 127.0.0.1:7001\nserver-proc-count = two\n",
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("x.cf:3") && err.contains("two"), "{err}");
        write(
            dir.path(),
            "x.cf",
            "server-command = /no/such/server\nserver-service = 127.0.0.1:7001\n",
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("x.cf:1") && err.contains("/no/such/server"),
            "{err}"
        );
    }

    #[test]
    fn a_long_bad_command_is_quoted_cut() {
        let dir = tempfile::tempdir().unwrap();
        let command = format!("/no/{}", "c".repeat(3_000));
        write(
            dir.path(),
            "x.cf",
            &format!("server-command = {command}\nserver-service = 127.0.0.1:7001\n"),
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.len() < 300 && err.contains("…(3004 bytes)"), "{err}");
    }

    #[test]
    fn a_relative_command_with_a_slash_is_a_file_not_a_path_lookup() {
        // validate makes such commands absolute first; check_command itself must not send
        // them to the PATH lookup either.
        let err = check_command(Path::new("no/such/server")).unwrap_err();
        assert_eq!(err, "not an executable file");
        let err = check_command(Path::new("/")).unwrap_err();
        assert_eq!(err, "not an executable file");
        assert_eq!(check_command(Path::new("sh")), Ok(()));
    }

    #[test]
    fn an_address_used_by_two_services_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.cf",
            "server-command = /bin/sh\nserver-service = 0:7001\n",
        );
        write(
            dir.path(),
            "b.cf",
            "server-command = /bin/sh\nserver-service = 0.0.0.0:7001\n",
        );
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("b.cf:2") && err.contains("already used by service a"),
            "{err}"
        );
    }
}
