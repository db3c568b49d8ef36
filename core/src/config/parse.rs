//! Reading the file: TOML and serde with the key path of every error,
//! `validate`, then the rules file it names (read, not compiled).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::error::Src;
use super::rules::RulesFile;
use super::{Config, ConfigError, RuleSources};

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
        cfg.read_rules_file(text, file, base)?;
        Ok(cfg)
    }

    /// Appends the rules of `rules.file` to those written inline and
    /// records where each rule was written. Reading them is all: rules are
    /// compiled by their user (the engine, for the workers it runs; the
    /// check commands, once), and their errors are placed by
    /// [`Config::rule_error`].
    fn read_rules_file(&mut self, text: &str, file: &str, base: &Path) -> Result<(), ConfigError> {
        let main = Src { file, text };
        let inline = self.rules.len();
        let mut lines: Vec<Option<usize>> = self
            .rules
            .iter()
            .map(|r| main.line_of(r.name.span()))
            .collect();
        let mut rules_file = None;
        if let Some(f) = &self.rules_section.file {
            let path = base.join(f);
            let rfile = path.display().to_string();
            let rtext = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                file: file.to_string(),
                line: None,
                key: Some("rules.file".into()),
                message: format!("cannot read {rfile}: {e}"),
            })?;
            let src = Src {
                file: &rfile,
                text: &rtext,
            };
            let parsed: RulesFile = deserialize(&src)?;
            lines.extend(parsed.rules.iter().map(|r| src.line_of(r.name.span())));
            self.rules.extend(parsed.rules);
            rules_file = Some(rfile);
        }
        self.rule_sources = Arc::new(RuleSources {
            file: file.to_string(),
            inline,
            rules_file,
            lines,
        });
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

impl RuleSources {
    /// A compile error of rule `index` (in match order) as the file that
    /// holds the rule says it: that file, the rule's line, and the key with
    /// the rule's index in that file.
    pub fn error(&self, index: usize, key: &str, message: String) -> ConfigError {
        let (file, idx) = match &self.rules_file {
            Some(rf) if index >= self.inline => (rf.as_str(), index - self.inline),
            _ => (self.file.as_str(), index),
        };
        ConfigError {
            file: file.to_string(),
            line: self.lines.get(index).copied().flatten(),
            key: Some(key.replacen(&format!("rule[{index}]"), &format!("rule[{idx}]"), 1)),
            message,
        }
    }
}
