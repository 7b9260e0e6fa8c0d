//! The hooks of a server (SPEC §7): `service_register`, `before_service`, `before_softstop`.

use zmaster_core::config::Config;
use zmaster_core::protocol::ListenerKind;

use super::error::Result;

type RegisterHook<L> = Box<dyn FnMut(&str, L, ListenerKind) -> Result<()>>;
type BeforeServiceHook = Box<dyn FnOnce(&Config) -> Result<()>>;

/// The hooks of a server (SPEC §7), generic over the mode's listener type `L`.
pub struct Hooks<L> {
    pub(crate) service_register: Option<RegisterHook<L>>,
    pub(crate) before_service: Option<BeforeServiceHook>,
    pub(crate) before_softstop: Option<Box<dyn FnOnce()>>,
}

impl<L> Default for Hooks<L> {
    fn default() -> Self {
        Hooks {
            service_register: None,
            before_service: None,
            before_softstop: None,
        }
    }
}

impl<L> std::fmt::Debug for Hooks<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("service_register", &self.service_register.is_some())
            .field("before_service", &self.before_service.is_some())
            .field("before_softstop", &self.before_softstop.is_some())
            .finish()
    }
}

impl<L> Hooks<L> {
    /// No hooks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called once per listener, in `-server-service` order, with the service name, the
    /// listener and its kind; typically registers it (`aio::general_register`). A listener the
    /// hook drops is closed. An error ends the start-up (exit 1).
    pub fn service_register(
        mut self,
        hook: impl FnMut(&str, L, ListenerKind) -> Result<()> + 'static,
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
}
