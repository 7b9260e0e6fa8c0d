//! `zstress chaos`: load while killing children of a master / sending it SIGHUP.
use crate::Result;
use crate::load::LoadConfig;
use std::path::PathBuf;
/// Which master to torment.
#[derive(Debug, Clone)]
pub enum MasterRef {
    /// Read the pid from this file.
    PidFile(PathBuf),
    /// This pid.
    Pid(i32),
}
/// Chaos parameters.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The master.
    pub master: MasterRef,
    /// The load.
    pub load: LoadConfig,
    /// SIGKILLs per second.
    pub kill_rate: f64,
    /// SIGHUPs per second.
    pub hup_rate: f64,
}
/// Chaos result.
#[derive(Debug)]
pub struct ChaosReport;
impl ChaosReport {
    /// Text.
    pub fn render(&self) -> String {
        String::new()
    }
    /// JSON.
    pub fn to_json(&self) -> String {
        String::new()
    }
}
/// Run.
pub fn run(_c: &ChaosConfig) -> Result<ChaosReport> {
    Ok(ChaosReport)
}
