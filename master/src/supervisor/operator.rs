//! What an operator asks of the running master: stop (fast or graceful), scale a service
//! (the control socket, SIGTTIN/SIGTTOU), reopen log files (SIGUSR1), upgrade (the control
//! socket; SIGUSR2 is the supervision loop's).

use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Supervisor;
use crate::control::{ControlServer, Reply, Request, StopMode};
use crate::error::Result;
use crate::services::Service;

/// The largest process count `scale` accepts (as `server-proc-count`).
pub(crate) const MAX_PROC_COUNT: usize = 4096;

impl Supervisor {
    /// What SIGUSR1 calls to reopen log files.
    pub(crate) fn on_reopen(&mut self, reopen: Box<dyn FnMut()>) {
        self.reopen = Some(reopen);
    }

    /// Asks for a stop at the next loop turn: graceful (SIGQUIT) or fast (SIGTERM). A fast
    /// request wins over a graceful one.
    pub(crate) fn request_stop(&mut self, graceful: bool) {
        self.stop_request = Some(stays_graceful(self.stop_request, graceful));
    }

    /// Serves the control socket at `path` (SPEC §11) from the supervision loop.
    ///
    /// # Errors
    /// It cannot be bound (another master answers there, or the path is not a socket).
    pub(crate) fn serve_control_at(&mut self, path: &std::path::Path) -> Result<()> {
        self.control = Some(ControlServer::bind(path)?);
        Ok(())
    }

    /// Serves the control socket an upgrading master handed over (`fd`, bound at `path`).
    ///
    /// # Errors
    /// `fd` is not a listener bound at `path`.
    pub(crate) fn adopt_control_at(
        &mut self,
        path: &std::path::Path,
        fd: std::os::fd::OwnedFd,
    ) -> Result<()> {
        self.control = Some(ControlServer::adopt(path, fd)?);
        Ok(())
    }

    /// Answers every control request that is ready, without blocking: status, reload (with
    /// its result), scale, stop.
    pub(super) fn serve_control(
        &mut self,
        reload_config: &mut dyn FnMut() -> Result<Vec<Service>>,
    ) {
        let Some(mut control) = self.control.take() else {
            return;
        };
        let mut upgrade = None;
        control.handle_ready(Instant::now(), |request, token| {
            if request == Request::Upgrade {
                // Started after the other requests are served; the reply waits for the result.
                upgrade = Some(token);
                return None;
            }
            Some(self.answer(request, reload_config))
        });
        self.control = Some(control);
        if let Some(token) = upgrade
            && let Err(why) = self.begin_upgrade("control socket", Some(token))
        {
            self.reply_upgrade(Some(token), Reply::error(why));
        }
    }

    fn answer(
        &mut self,
        request: Request,
        reload_config: &mut dyn FnMut() -> Result<Vec<Service>>,
    ) -> Reply {
        match request {
            Request::Status => Reply::status(self.status(Instant::now()).to_control()),
            Request::Reload => match self.reload_now(reload_config) {
                Ok(generation) => Reply::reloaded(generation),
                Err(e) => Reply::error(e),
            },
            Request::Scale { service, n } => {
                match self.scale(&service, usize::try_from(n).unwrap_or(usize::MAX)) {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::error(e),
                }
            }
            Request::Upgrade => Reply::error("upgrade: answered by the caller"),
            Request::Stop { mode } => {
                self.request_stop(mode == StopMode::Graceful);
                Reply::ok()
            }
        }
    }

    /// SIGUSR1.
    pub(super) fn reopen_logs(&mut self) {
        match self.reopen.as_mut() {
            Some(reopen) => {
                reopen();
                log::info!("SIGUSR1: log files reopened");
            }
            None => log::info!(
                "SIGUSR1: no log file open (the master logs to stderr); nothing to reopen"
            ),
        }
    }

    /// Sets `service`'s process count to `n` until the next reload (the control socket's
    /// `scale`); a service that gave up starts again. Extra children are SIGTERMed, youngest
    /// first.
    pub(crate) fn scale(&mut self, service: &str, n: usize) -> std::result::Result<(), String> {
        check_count(n)?;
        let Some(state) = self.services.iter_mut().find(|s| s.spec.name == service) else {
            return Err(format!("no service named {service:?}"));
        };
        let was = state.proc_count;
        state.proc_count = n;
        state.policy.revive(Instant::now());
        log::info!("service={service} scaled from {was} to {n} processes until the next reload");
        let extra = self
            .children
            .serving_youngest_first(service, self.generation.number);
        for pid in extra.into_iter().skip(n) {
            if let Some(child) = self.children.get_mut(pid) {
                child.retiring = true;
                child.private = None;
                child.detach_check = None;
                log::info!("service={service} pid={pid} retiring: scaled down");
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        Ok(())
    }

    /// SIGTTIN (`more`) / SIGTTOU: one process more / fewer for every service; never below
    /// one (gunicorn's habit) unless the service is configured with none.
    pub(super) fn scale_all(&mut self, more: bool) {
        let counts: Vec<(String, usize)> = self
            .services
            .iter()
            .filter(|s| ttin_ttou(s.proc_count, more) != s.proc_count)
            .map(|s| (s.spec.name.clone(), ttin_ttou(s.proc_count, more)))
            .collect();
        for (name, n) in counts {
            if let Err(e) = self.scale(&name, n) {
                log::warn!("service={name}: {e}");
            }
        }
    }
}

/// Whether a stop is graceful after a request (`graceful` or fast) following `earlier` (none,
/// or one that was graceful or not): any fast request makes it fast.
fn stays_graceful(earlier: Option<bool>, graceful: bool) -> bool {
    earlier.unwrap_or(true) && graceful
}

/// A process count `scale` accepts: at most [`MAX_PROC_COUNT`], as `server-proc-count`.
fn check_count(n: usize) -> std::result::Result<(), String> {
    if n > MAX_PROC_COUNT {
        return Err(format!("process count {n} is over {MAX_PROC_COUNT}"));
    }
    Ok(())
}

/// The process count after SIGTTIN (`more`) or SIGTTOU: one more / one fewer, never below one;
/// a service configured to start nothing (`server-proc-count = 0`) stays at zero.
fn ttin_ttou(count: usize, more: bool) -> usize {
    if count == 0 {
        0
    } else if more {
        (count + 1).min(MAX_PROC_COUNT)
    } else {
        count.saturating_sub(1).max(count.min(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_stop_request_wins_over_a_graceful_one() {
        assert!(stays_graceful(None, true));
        assert!(!stays_graceful(None, false));
        assert!(stays_graceful(Some(true), true));
        assert!(!stays_graceful(Some(true), false));
        assert!(
            !stays_graceful(Some(false), true),
            "a graceful request cannot slow a fast stop"
        );
    }

    #[test]
    fn a_scale_takes_up_to_max_proc_count() {
        assert_eq!(check_count(0), Ok(()));
        assert_eq!(check_count(MAX_PROC_COUNT), Ok(()));
        let e = check_count(MAX_PROC_COUNT + 1).expect_err("too many");
        assert_eq!(e, "process count 4097 is over 4096");
    }

    #[test]
    fn ttin_adds_one_and_ttou_removes_one_but_never_the_last() {
        assert_eq!(ttin_ttou(2, true), 3);
        assert_eq!(ttin_ttou(0, true), 0);
        assert_eq!(ttin_ttou(MAX_PROC_COUNT, true), MAX_PROC_COUNT);
        assert_eq!(ttin_ttou(3, false), 2);
        assert_eq!(ttin_ttou(2, false), 1);
        assert_eq!(ttin_ttou(1, false), 1);
        assert_eq!(ttin_ttou(0, false), 0);
    }
}
