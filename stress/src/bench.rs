//! `zstress bench`.
use crate::Result;
use std::path::PathBuf;
use std::time::Duration;
/// Bench parameters.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// d
    pub duration: Duration,
    /// w
    pub warmup: Duration,
    /// c
    pub conns: usize,
    /// t
    pub client_threads: usize,
    /// s
    pub size: usize,
    /// b
    pub bin_dir: PathBuf,
    /// o
    pub out_dir: PathBuf,
    /// w
    pub workers: Vec<usize>,
    /// o
    pub only: Option<Vec<String>>,
}
impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
            conns: 32,
            client_threads: 1,
            size: 64,
            bin_dir: "target/release".into(),
            out_dir: "bench-out".into(),
            workers: vec![1, 2],
            only: None,
        }
    }
}
impl BenchConfig {
    /// v
    pub fn validate(&self) -> Result<()> {
        Ok(())
    }
}
/// r
#[derive(Debug)]
pub struct BenchReport;
impl BenchReport {
    /// t
    pub fn table_text(&self) -> String {
        String::new()
    }
}
/// Run.
pub fn run(_c: &BenchConfig) -> Result<BenchReport> {
    Ok(BenchReport)
}
