//! The configuration loader on any text, then the rule compiler on what it
//! read (the engine compiles a configuration's rules itself): a `Config`
//! and a rule set, or an error naming file, line and key; never a panic.
#![no_main]

use dnsrail_core::config::Config;
use dnsrail_core::rules::RuleSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::parse(text, "fuzz.toml") {
            Ok(cfg) => {
                if let Err(e) = RuleSet::from_config(&cfg, 2) {
                    assert!(!e.to_string().is_empty());
                    assert_eq!(e.file, "fuzz.toml");
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
