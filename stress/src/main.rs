//! `zstress`: the command-line shell over `zmaster_stress` (parse, run, print, exit code).

use std::process::ExitCode;

use zmaster_stress::args::{self, Command, USAGE};
use zmaster_stress::{ErrorKind, bench, chaos, load, procs};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zstress: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Many connections need many fds; a failure here only means the default limit stays.
    let _ = procs::raise_nofile_limit();
    let result = match cmd {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Load { mut cfg, json } => {
            cfg.progress = load::stderr_is_tty();
            load::run(&cfg, None).map(|r| {
                print!("{}", r.summary_table());
                if json {
                    println!("{}", r.to_json());
                }
                r.errors.total() == 0 && !r.capped
            })
        }
        Command::Chaos { mut cfg, json } => {
            cfg.load.progress = load::stderr_is_tty();
            chaos::run(&cfg).map(|r| {
                print!("{}", r.render());
                if json {
                    println!("{}", r.to_json());
                }
                true
            })
        }
        Command::Bench { cfg, json } => bench::run(&cfg).map(|r| {
            print!("{}", r.table_text());
            if json {
                println!("{}", r.to_json());
            }
            true
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("zstress: {e}");
            ExitCode::from(if e.kind() == ErrorKind::Usage { 2 } else { 1 })
        }
    }
}
