//! Hand-written command-line parsing for `zstress` (durations, sizes, rates, addresses).

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::{BenchConfig, ConnectRows};
use crate::chaos::{ChaosConfig, MasterRef};
use crate::load::LoadConfig;
pub use crate::target::{Limit, Target};
use crate::{Error, Result};

/// The usage text printed by `zstress help` and after usage errors.
pub const USAGE: &str = "\
usage:
  zstress load ADDR [--conns N] [--duration T | --requests K] [--warmup T] [--size B]
                    [--threads K] [--banner N] [--connect-per-request] [--timeout T]
                    [--max-time T] [--json]
  zstress chaos (--pid-file F | --master-pid P) ADDR [--kill-rate R/s] [--hup-rate R/s]
                    [--upgrade-rate R/s (with --pid-file)] [--duration T] [load options]
                    [--json]
  zstress bench [--duration T] [--warmup T] [--conns N] [--client-threads K] [--size B]
                    [--bin-dir DIR] [--out DIR] [--procs 1,2] [--workers 1,2]
                    [--connect-per-request[=only]] [--connect-conns N] [--idle N]
                    [--only NAME,...] [--repeat N] [--json]
ADDR is 127.0.0.1:PORT (loopback only) or a unix socket path.
T is a duration (500ms, 10s, 2m; bare number = seconds); B a size (64, 4k).";

/// A parsed `zstress` command line.
#[derive(Debug)]
pub enum Command {
    /// `zstress load`.
    Load {
        /// The load to run.
        cfg: LoadConfig,
        /// Print the JSON object as the last stdout line.
        json: bool,
    },
    /// `zstress chaos`.
    Chaos {
        /// The chaos run.
        cfg: ChaosConfig,
        /// Print the JSON object as the last stdout line.
        json: bool,
    },
    /// `zstress bench`.
    Bench {
        /// The bench to run.
        cfg: BenchConfig,
        /// Print the rows as one JSON object on the last stdout line.
        json: bool,
    },
    /// `zstress help` / `--help`.
    Help,
}

/// Parse a duration: `250ms`, `10s`, `2m`, `1h`, `1d`, `1w`, or a bare number of seconds
/// (fractions allowed: `0.5`, `1.5s`).
///
/// # Errors
/// A usage error naming the value.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::usage(format!("bad duration {s:?} (examples: 500ms, 10s, 2m)"));
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86400.0)
    } else if let Some(n) = s.strip_suffix('w') {
        (n, 7.0 * 86400.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(v * mult).map_err(|_| bad())
}

/// Parse a size: bare bytes, or with suffix `b k m g` (powers of 1024).
///
/// # Errors
/// A usage error naming the value.
pub fn parse_size(s: &str) -> Result<usize> {
    let bad = || Error::usage(format!("bad size {s:?} (examples: 64, 4k, 1m)"));
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.as_bytes().last() {
        Some(b'b') => (&lower[..lower.len() - 1], 1usize),
        Some(b'k') => (&lower[..lower.len() - 1], 1 << 10),
        Some(b'm') => (&lower[..lower.len() - 1], 1 << 20),
        Some(b'g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    let v: usize = num.trim().parse().map_err(|_| bad())?;
    v.checked_mul(mult).ok_or_else(bad)
}

/// Parse a rate in events per second: `2`, `2/s`, `0.5/s`, `30/m`.
///
/// # Errors
/// A usage error naming the value.
pub fn parse_rate(s: &str) -> Result<f64> {
    let bad = || Error::usage(format!("bad rate {s:?} (examples: 2/s, 0.5/s, 30/m)"));
    let (num, per) = match s.split_once('/') {
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 60.0),
        Some(_) => return Err(bad()),
        None => (s, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok(v / per)
}

fn parse_num<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::usage(format!("{opt}: bad number {v:?}")))
}

/// A cursor over argv that understands `--opt value` and `--opt=value`.
struct Argv {
    items: Vec<String>,
    pos: usize,
}

impl Argv {
    fn next(&mut self) -> Option<(String, Option<String>)> {
        let a = self.items.get(self.pos)?.clone();
        self.pos += 1;
        match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => Some((k.to_string(), Some(v.to_string()))),
            _ => Some((a, None)),
        }
    }

    fn value(&mut self, opt: &str, inline: Option<String>) -> Result<String> {
        if let Some(v) = inline {
            return Ok(v);
        }
        let v = self
            .items
            .get(self.pos)
            .cloned()
            .ok_or_else(|| Error::usage(format!("{opt} needs a value")))?;
        self.pos += 1;
        Ok(v)
    }
}

/// Options shared by `load` and `chaos`; returns `Ok(false)` if `opt` is not one of them.
fn load_option(
    a: &mut Argv,
    cfg: &mut LoadConfig,
    opt: &str,
    inl: Option<String>,
    dur: &mut Option<Duration>,
) -> Result<bool> {
    match opt {
        "--conns" | "-c" => cfg.conns = parse_num(opt, &a.value(opt, inl)?)?,
        "--duration" | "-d" => *dur = Some(parse_duration(&a.value(opt, inl)?)?),
        "--requests" | "-n" => cfg.limit = Limit::Requests(parse_num(opt, &a.value(opt, inl)?)?),
        "--warmup" => cfg.warmup = parse_duration(&a.value(opt, inl)?)?,
        "--size" | "-s" => cfg.size = parse_size(&a.value(opt, inl)?)?,
        "--threads" | "-t" => cfg.threads = parse_num(opt, &a.value(opt, inl)?)?,
        "--banner" => cfg.banner = parse_num(opt, &a.value(opt, inl)?)?,
        "--timeout" => cfg.timeout = parse_duration(&a.value(opt, inl)?)?,
        "--max-time" => cfg.max_time = parse_duration(&a.value(opt, inl)?)?,
        "--connect-per-request" => cfg.connect_per_request = true,
        _ => return Ok(false),
    }
    Ok(true)
}

fn finish_load(cfg: &mut LoadConfig, dur: Option<Duration>, requests_given: bool) -> Result<()> {
    match (dur, requests_given) {
        (Some(_), true) => return Err(Error::usage("--duration and --requests are exclusive")),
        (Some(d), false) => cfg.limit = Limit::Duration(d),
        _ => {}
    }
    cfg.validate()
}

/// Parse `zstress` arguments (without `argv[0]`).
///
/// # Errors
/// A usage error with a one-line message.
pub fn parse(args: &[String]) -> Result<Command> {
    let Some(sub) = args.first() else {
        return Err(Error::usage("missing command: load, chaos or bench"));
    };
    let mut a = Argv {
        items: args[1..].to_vec(),
        pos: 0,
    };
    match sub.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help),
        "load" => {
            let mut addr = None;
            let mut json = false;
            let mut dur = None;
            let mut cfg = LoadConfig::new(Target::Unix(PathBuf::new()));
            while let Some((opt, inl)) = a.next() {
                if load_option(&mut a, &mut cfg, &opt, inl, &mut dur)? {
                    continue;
                }
                match opt.as_str() {
                    "--json" => json = true,
                    "--help" | "-h" => return Ok(Command::Help),
                    o if o.starts_with('-') && o.len() > 1 => {
                        return Err(Error::usage(format!("load: unknown option {o}")));
                    }
                    _ if addr.is_none() => addr = Some(Target::parse(&opt)?),
                    _ => return Err(Error::usage(format!("load: unexpected argument {opt:?}"))),
                }
            }
            cfg.target = addr.ok_or_else(|| Error::usage("load: missing ADDR"))?;
            let req = matches!(cfg.limit, Limit::Requests(_));
            finish_load(&mut cfg, dur, req)?;
            Ok(Command::Load { cfg, json })
        }
        "chaos" => {
            let mut addr = None;
            let mut json = false;
            let mut dur = None;
            let mut master = None;
            let mut load = LoadConfig::new(Target::Unix(PathBuf::new()));
            let (mut kill_rate, mut hup_rate, mut upgrade_rate) = (0.0, 0.0, 0.0);
            while let Some((opt, inl)) = a.next() {
                if load_option(&mut a, &mut load, &opt, inl.clone(), &mut dur)? {
                    continue;
                }
                match opt.as_str() {
                    "--json" => json = true,
                    "--pid-file" => {
                        master = Some(MasterRef::PidFile(PathBuf::from(a.value(&opt, inl)?)))
                    }
                    "--master-pid" => {
                        master = Some(MasterRef::Pid(parse_num(&opt, &a.value(&opt, inl)?)?))
                    }
                    "--kill-rate" => kill_rate = parse_rate(&a.value(&opt, inl)?)?,
                    "--hup-rate" => hup_rate = parse_rate(&a.value(&opt, inl)?)?,
                    "--upgrade-rate" => upgrade_rate = parse_rate(&a.value(&opt, inl)?)?,
                    "--help" | "-h" => return Ok(Command::Help),
                    o if o.starts_with('-') && o.len() > 1 => {
                        return Err(Error::usage(format!("chaos: unknown option {o}")));
                    }
                    _ if addr.is_none() => addr = Some(Target::parse(&opt)?),
                    _ => return Err(Error::usage(format!("chaos: unexpected argument {opt:?}"))),
                }
            }
            load.target = addr.ok_or_else(|| Error::usage("chaos: missing ADDR"))?;
            if matches!(load.limit, Limit::Requests(_)) {
                return Err(Error::usage("chaos: use --duration, not --requests"));
            }
            finish_load(&mut load, dur, false)?;
            let master = master
                .ok_or_else(|| Error::usage("chaos: needs --pid-file F or --master-pid P"))?;
            if upgrade_rate > 0.0 && !matches!(master, MasterRef::PidFile(_)) {
                return Err(Error::usage(
                    "chaos: --upgrade-rate needs --pid-file F (the new master's pid is read from it)",
                ));
            }
            if kill_rate == 0.0 && hup_rate == 0.0 && upgrade_rate == 0.0 {
                kill_rate = 1.0;
            }
            Ok(Command::Chaos {
                cfg: ChaosConfig {
                    master,
                    load,
                    kill_rate,
                    hup_rate,
                    upgrade_rate,
                    count_victim_conns: false,
                },
                json,
            })
        }
        "bench" => parse_bench(&mut a),
        other => Err(Error::usage(format!(
            "unknown command {other:?}: expected load, chaos or bench"
        ))),
    }
}

/// A comma-separated list of counts (`1,2`).
fn parse_counts(opt: &str, v: &str) -> Result<Vec<usize>> {
    v.split(',').map(|w| parse_num(opt, w.trim())).collect()
}

fn parse_bench(a: &mut Argv) -> Result<Command> {
    let mut cfg = BenchConfig::default();
    let mut json = false;
    while let Some((opt, inl)) = a.next() {
        match opt.as_str() {
            "--duration" | "-d" => cfg.duration = parse_duration(&a.value(&opt, inl)?)?,
            "--warmup" => cfg.warmup = parse_duration(&a.value(&opt, inl)?)?,
            "--conns" | "-c" => cfg.conns = parse_num(&opt, &a.value(&opt, inl)?)?,
            "--connect-conns" => cfg.connect_conns = parse_num(&opt, &a.value(&opt, inl)?)?,
            "--client-threads" => cfg.client_threads = parse_num(&opt, &a.value(&opt, inl)?)?,
            "--size" | "-s" => cfg.size = parse_size(&a.value(&opt, inl)?)?,
            "--repeat" => cfg.repeat = parse_num(&opt, &a.value(&opt, inl)?)?,
            "--bin-dir" => cfg.bin_dir = PathBuf::from(a.value(&opt, inl)?),
            "--out" => cfg.out_dir = PathBuf::from(a.value(&opt, inl)?),
            "--procs" => cfg.procs = parse_counts(&opt, &a.value(&opt, inl)?)?,
            "--workers" => cfg.workers = parse_counts(&opt, &a.value(&opt, inl)?)?,
            "--idle" => cfg.idle = parse_num(&opt, &a.value(&opt, inl)?)?,
            // A flag with an optional inline value: `--connect-per-request=only`.
            "--connect-per-request" => {
                cfg.connect = match inl.as_deref() {
                    None | Some("also") => ConnectRows::Also,
                    Some("only") => ConnectRows::Only,
                    Some(v) => {
                        return Err(Error::usage(format!(
                            "--connect-per-request={v}: expected =only or =also"
                        )));
                    }
                }
            }
            "--only" => {
                let v = a.value(&opt, inl)?;
                cfg.only = Some(v.split(',').map(|s| s.trim().to_string()).collect());
            }
            "--json" if inl.is_some() => return Err(Error::usage("--json takes no value")),
            "--json" => json = true,
            "--help" | "-h" => return Ok(Command::Help),
            o => return Err(Error::usage(format!("bench: unknown argument {o}"))),
        }
    }
    cfg.validate()?;
    Ok(Command::Bench { cfg, json })
}
