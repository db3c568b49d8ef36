//! Reading the file: TOML and serde with the key path of every error, the
//! rules file it names, compiled, then `validate`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::error::Src;
use super::{Config, ConfigError};
use crate::rules::config::RulesFile;
use crate::rules::RuleSet;

/// Parses `ip`, `ip:port` or `[ipv6]:port`, with `default_port` when absent.
pub fn parse_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse_in(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates `text`; `file` names it in errors. A relative
    /// `rules.file` is taken from the current directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, file, Path::new("."))
    }

    fn parse_in(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::parse_only(text, file)?;
        cfg.compile_rules(text, file, base)?;
        Ok(cfg)
    }

    fn compile_rules(&mut self, text: &str, file: &str, base: &Path) -> Result<(), ConfigError> {
        let mut all = self.rules.clone();
        let mut extra: Option<(String, String)> = None;
        if let Some(f) = &self.rules_section.file {
            let path = base.join(f);
            let rfile = path.display().to_string();
            let rtext = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                file: file.to_string(),
                line: None,
                key: Some("rules.file".into()),
                message: format!("cannot read {rfile}: {e}"),
            })?;
            let parsed: RulesFile = deserialize(&Src {
                file: &rfile,
                text: &rtext,
            })?;
            all.extend(parsed.rules);
            extra = Some((rfile, rtext));
        }
        let inline = self.rules.len();
        let set = RuleSet::compile(&all, &self.pool_names(), self.worker_count()).map_err(|e| {
            let (f, t, idx) = match &extra {
                Some((rf, rt)) if e.index >= inline => (rf.as_str(), rt.as_str(), e.index - inline),
                _ => (file, text, e.index),
            };
            let src = Src { file: f, text: t };
            let key = e
                .key
                .replacen(&format!("rule[{}]", e.index), &format!("rule[{idx}]"), 1);
            src.err(Some(all[e.index].name.span()), key, e.message)
        })?;
        self.compiled_rules = Some(Arc::new(set));
        Ok(())
    }

    fn parse_only(text: &str, file: &str) -> Result<Config, ConfigError> {
        let src = Src { file, text };
        let cfg: Config = deserialize(&src)?;
        cfg.validate(&src)?;
        Ok(cfg)
    }
}

/// TOML into `T`, an error naming the file, the line and the key path (the
/// configuration file and the rules file alike).
fn deserialize<T: serde::de::DeserializeOwned>(src: &Src) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(src.text)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ConfigError {
            file: src.file.to_string(),
            line: inner.span().and_then(|s| src.line_of(s)),
            key: (path != ".").then_some(path),
            message: inner.message().trim().to_string(),
        }
    })
}
