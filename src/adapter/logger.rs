//! The `log` facade to Envoy's log (`proxy_log`), at Info and above.
use crate::adapter::abi;

struct ProxyLog;

static LOGGER: ProxyLog = ProxyLog;

pub fn install() {
    // Fails only if a logger is already set: then that one stays.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

impl log::Log for ProxyLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        // proxy-wasm levels: 0 trace, 1 debug, 2 info, 3 warn, 4 error.
        let level = match record.level() {
            log::Level::Error => 4,
            log::Level::Warn => 3,
            log::Level::Info => 2,
            log::Level::Debug => 1,
            log::Level::Trace => 0,
        };
        abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}
