//! `bench.json` and `zstress bench --json`: every row of a [`BenchReport`] as one JSON object.

use std::fmt::Write as _;

use super::{BenchReport, Server};
use crate::report::json_str;

impl BenchReport {
    /// Every row as one JSON object (what `bench.json` and `--json` hold); latencies in µs,
    /// idle memory in bytes per connection.
    pub fn to_json(&self) -> String {
        let num = |v: Option<f64>, prec: usize| v.map_or("null".into(), |v| format!("{v:.prec$}"));
        let mut rows = Vec::new();
        for r in &self.rows {
            let opt = |v: Option<usize>| v.map_or("null".into(), |v| v.to_string());
            let mut o = format!(
                "{{\"placement\":{},\"load\":{},\"server\":{},\"procs\":{},\"workers\":{},\"threads\":{},",
                json_str(r.placement.label()),
                json_str(r.spec.load.label()),
                json_str(r.spec.server.label()),
                opt(r.spec.procs),
                opt(r.spec.workers),
                r.spec.total_threads()
            );
            match &r.outcome {
                Ok(m) => {
                    let _ = write!(
                        o,
                        "\"error\":null,\"rps\":{:.1},\"rps_runs\":[{}],\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\"errors\":{},\"srv_cpu_us_per_req\":{},\"client_wait\":{},\"ratio_epoll\":{},\"ratio_tokio\":{},",
                        m.rps,
                        r.runs_rps
                            .iter()
                            .map(|v| format!("{v:.1}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        m.p50,
                        m.p90,
                        m.p99,
                        m.p999,
                        m.max,
                        m.errors,
                        num(m.server_cpu_us, 2),
                        num(m.client_wait, 3),
                        num(self.reference(r, Server::Epoll).map(|b| m.rps / b), 3),
                        num(self.reference(r, Server::Tokio).map(|b| m.rps / b), 3),
                    );
                }
                Err(e) => {
                    let _ = write!(o, "\"error\":{},", json_str(e));
                }
            }
            match &r.idle {
                Some(i) => {
                    let _ = write!(
                        o,
                        "\"idle\":{{\"wanted\":{},\"opened\":{},\"rss_before\":{},\"rss_after\":{},\"bytes_per_conn\":{},\"error\":{}}}}}",
                        i.wanted,
                        i.opened,
                        i.rss_before,
                        i.rss_after,
                        num(i.bytes_per_conn(), 1),
                        i.error.as_deref().map_or("null".into(), json_str)
                    );
                }
                None => o.push_str("\"idle\":null}"),
            }
            rows.push(o);
        }
        format!(
            "{{\"setup\":{},\"rows\":[{}]}}",
            json_str(&self.setup),
            rows.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::tests::report;

    #[test]
    fn json_rows() {
        let j = report().to_json();
        assert!(
            j.starts_with("{\"setup\":\"test setup\",\"rows\":[{") && j.ends_with("}]}"),
            "{j}"
        );
        for needle in [
            "{\"placement\":\"cpu0\",\"load\":\"echo\",\"server\":\"zmaster+echo-aio\",\"procs\":2,\"workers\":1,\"threads\":2,\"error\":null,\"rps\":50.0,\"rps_runs\":[55.0,50.0,45.0],\"latency_us\":{\"p50\":100,\"p90\":500,\"p99\":900,\"p999\":20000,\"max\":30000},\"errors\":0,\"srv_cpu_us_per_req\":12.50,\"client_wait\":0.250,\"ratio_epoll\":0.500,\"ratio_tokio\":1.250,\"idle\":{\"wanted\":10,\"opened\":10,\"rss_before\":1048576,\"rss_after\":1094656,\"bytes_per_conn\":4608.0,\"error\":null}}",
            "\"opened\":4,\"rss_before\":1048576,\"rss_after\":1056768,\"bytes_per_conn\":2048.0,\"error\":\"connection 5: refused\"}",
            "\"server\":\"zmaster+echo-coroutine\",\"procs\":1,\"workers\":1,\"threads\":1,\"error\":\"skipped: not built\",\"idle\":null}",
            "\"server\":\"echo-epoll\",\"procs\":null,\"workers\":null,\"threads\":1,",
            "\"ratio_epoll\":1.000,\"ratio_tokio\":null,",
        ] {
            assert!(j.contains(needle), "{needle}\nmissing in\n{j}");
        }
    }
}
