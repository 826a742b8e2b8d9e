//! The standard `process_*` metrics (CPU, memory, file descriptors, start time),
//! read from `/proc` at each scrape, under the names every Prometheus dashboard
//! expects. `prometheus-client` ships no process collector, so this one is small
//! and local; on systems without `/proc` it reports nothing.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

#[derive(Debug, Default)]
pub struct ProcessCollector;

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector
    }
}

/// What `/proc/self/stat` and friends say, in base units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: f64,
}

/// Reads the process's figures; `None` without `/proc`.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i - 3)?.parse::<f64>().ok();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(f64::INFINITY, |v| v as f64);
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page,
        start_time_seconds: boot + num(22)? / ticks,
        open_fds,
        max_fds,
    })
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = read() else { return Ok(()) };
        let counter = ConstCounter::new(p.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                p.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                p.virtual_bytes,
            ),
            (
                "process_start_time",
                "Start time of the process since the unix epoch",
                Some(Unit::Seconds),
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Limit of open file descriptors",
                None,
                p.max_fds,
            ),
        ];
        for (name, help, unit, v) in gauges {
            ConstGauge::new(v).encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let p = super::read().expect("/proc is mounted");
        assert!(p.resident_bytes > 1e6, "{p:?}");
        assert!(p.open_fds >= 3.0 && p.max_fds >= p.open_fds, "{p:?}");
        assert!(p.start_time_seconds > 1.6e9, "{p:?}");
    }
}
