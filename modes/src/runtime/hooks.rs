//! The hooks of a server (SPEC §7): `service_register`, `before_service`, `before_softstop`.

use zmaster_core::config::Config;
use zmaster_core::protocol::ListenerKind;

use super::error::Result;

type RegisterHook<L, R> = Box<dyn FnMut(&str, L, ListenerKind) -> Result<R>>;
type BeforeServiceHook = Box<dyn FnOnce(&Config) -> Result<()>>;

/// The hooks of a server (SPEC §7), generic over the mode's listener type `L` and what its
/// `service_register` hook returns per listener, `R` (the mode's registration).
pub struct Hooks<L, R> {
    pub(crate) service_register: Option<RegisterHook<L, R>>,
    pub(crate) before_service: Option<BeforeServiceHook>,
    pub(crate) before_softstop: Option<Box<dyn FnOnce()>>,
    pub(crate) drain_on_softstop: bool,
}

impl<L, R> Default for Hooks<L, R> {
    fn default() -> Self {
        Hooks {
            service_register: None,
            before_service: None,
            before_softstop: None,
            drain_on_softstop: false,
        }
    }
}

impl<L, R> std::fmt::Debug for Hooks<L, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("service_register", &self.service_register.is_some())
            .field("before_service", &self.before_service.is_some())
            .field("before_softstop", &self.before_softstop.is_some())
            .field("drain_on_softstop", &self.drain_on_softstop)
            .finish()
    }
}

impl<L, R> Hooks<L, R> {
    /// No hooks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called once per listener, in `-server-service` order, with the service name, the
    /// listener and its kind; returns what serves that listener (in aio mode, return
    /// `aio::general_register(listener, handler)`). An error ends the start-up (exit 1).
    pub fn service_register(
        mut self,
        hook: impl FnMut(&str, L, ListenerKind) -> Result<R> + 'static,
    ) -> Self {
        self.service_register = Some(Box::new(hook));
        self
    }

    /// Called once with the effective config, before any listener is registered (to read
    /// the program's own keys, open files, ...). An error ends the start-up (exit 1).
    pub fn before_service(mut self, hook: impl FnOnce(&Config) -> Result<()> + 'static) -> Self {
        self.before_service = Some(Box::new(hook));
        self
    }

    /// Called once when a softstop begins (after accepting stopped); its presence makes the
    /// server drain open connections (up to 3600 s unless `server-stop-on-softstop-after`).
    pub fn before_softstop(mut self, hook: impl FnOnce() + 'static) -> Self {
        self.before_softstop = Some(Box::new(hook));
        self
    }

    /// Drains open connections on softstop as if a `before_softstop` hook were set, without
    /// one (what `aio::serve` does). Without this or that hook, a softstop exits at once.
    pub fn drain_on_softstop(mut self) -> Self {
        self.drain_on_softstop = true;
        self
    }

    /// The hooks of a mode's one-call `serve` (`aio::serve`, `coroutine::serve`): every
    /// listener, whatever its service name and kind, registered by `register`, and a softstop
    /// drains open connections.
    pub fn serve_every_listener(mut register: impl FnMut(L) -> Result<R> + 'static) -> Self {
        Hooks::new()
            .service_register(move |_name, listener, _kind| register(listener))
            .drain_on_softstop()
    }

    /// Whether a softstop drains open connections: [`Hooks::drain_on_softstop`] or a
    /// `before_softstop` hook.
    pub fn drains_on_softstop(&self) -> bool {
        self.drain_on_softstop || self.before_softstop.is_some()
    }
}
