//! The configuration loader on any text: a `Config` or an error naming
//! file, line and key; never a panic.
#![no_main]

use dnsrail_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::parse(text, "fuzz.toml") {
            assert!(!e.to_string().is_empty());
        }
    }
});
