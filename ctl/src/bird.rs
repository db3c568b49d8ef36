//! BIRD 2 as the announcer: ctl never speaks BGP itself. It writes the VIP
//! routes into a file that BIRD's configuration includes and asks BIRD to
//! re-read its configuration over BIRD's control socket (`birdc configure`,
//! without forking birdc).
//!
//! Why a generated include file rather than enabling and disabling a static
//! protocol: the file is the whole truth at any moment. A BIRD that
//! restarts reads it and announces exactly what ctl last decided, with no
//! window in which a protocol defined as enabled announces a VIP for a node
//! that is down, and the routes come from dnsrail.toml's frontends, so the
//! VIPs are written once. `configure` is a soft reconfiguration: unchanged
//! routes are not re-sent, it takes about 2 ms here.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

/// The include file's text: one static protocol per address family, with
/// the VIP routes when `announce`, empty otherwise. The protocols always
/// exist, so export filters that name them stay valid.
pub fn render(protocol: &str, vips: &[IpAddr], announce: bool) -> String {
    let mut out = String::from(
        "# Written by dnsrailctl ([announce] in dnsrail.toml): do not edit.\n\
         # The VIP routes while this node is healthy and not drained; none otherwise.\n",
    );
    for (suffix, family, v4) in [("4", "ipv4", true), ("6", "ipv6", false)] {
        out += &format!("protocol static {protocol}{suffix} {{\n    {family};\n");
        for ip in vips.iter().filter(|ip| ip.is_ipv4() == v4) {
            if announce {
                let len = if v4 { 32 } else { 128 };
                // Unreachable: the route only carries the prefix to BGP
                // (eBGP sends our own address as next hop). The VIP itself
                // is a local address, which the kernel's local table
                // serves whatever the main table holds.
                out += &format!("    route {ip}/{len} unreachable;\n");
            }
        }
        out += "}\n";
    }
    out
}

/// Routes the text of `render` announces (to read back the state a previous
/// ctl left).
pub fn announced_routes(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_start().starts_with("route "))
        .count()
}

/// Writes `text` to `path` atomically (a reader sees the old or the new
/// file, never half of one).
pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// One reply of BIRD's control protocol: the final code and every line's
/// text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// 8xxx are run-time errors, 9xxx syntax errors.
    pub fn is_error(&self) -> bool {
        self.code >= 8000
    }

    pub fn text(&self) -> String {
        self.lines.join("; ")
    }
}

/// A connection to BIRD's control socket. Commands are one line; a reply is
/// lines of `NNNN-text` (more follows), ` text` (continuation) and a final
/// `NNNN text`.
pub struct Bird {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Bird {
    pub fn connect(socket: &Path, timeout: Duration) -> anyhow::Result<Bird> {
        let s = UnixStream::connect(socket)
            .with_context(|| format!("cannot reach BIRD at {}", socket.display()))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut b = Bird {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        let hello = b.reply()?;
        if hello.code != 1 {
            bail!("BIRD greeted with {} {}", hello.code, hello.text());
        }
        Ok(b)
    }

    fn reply(&mut self) -> anyhow::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l)? == 0 {
                bail!("BIRD closed the control connection");
            }
            let l = l.trim_end_matches('\n');
            let b = l.as_bytes();
            if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) {
                lines.push(l[5..].to_string());
                if b[4] == b' ' {
                    let code = l[..4].parse().expect("four digits");
                    return Ok(Reply { code, lines });
                }
            } else {
                lines.push(l.trim_start().to_string());
            }
            if lines.len() > 100_000 {
                bail!("BIRD's reply does not end");
            }
        }
    }

    pub fn command(&mut self, cmd: &str) -> anyhow::Result<Reply> {
        self.w.write_all(format!("{cmd}\n").as_bytes())?;
        self.reply()
    }

    /// `configure`: BIRD re-reads its configuration (and our file).
    pub fn configure(&mut self) -> anyhow::Result<()> {
        let r = self.command("configure")?;
        match r.code {
            // Reconfigured; in progress; queued behind one in progress.
            3..=5 => Ok(()),
            _ => bail!("BIRD refused to reconfigure: {} {}", r.code, r.text()),
        }
    }

    /// The routes `protocol` has in BIRD now, or an error saying BIRD does
    /// not know the protocol (its configuration does not include our file).
    pub fn route_count(&mut self, protocol: &str) -> anyhow::Result<usize> {
        let r = self.command(&format!("show route protocol {protocol} count"))?;
        if r.is_error() {
            bail!(
                "BIRD has no protocol {protocol} ({} {}): does its configuration include the file?",
                r.code,
                r.text()
            );
        }
        // "1 of 1 routes for 1 networks in table master4"
        r.lines
            .iter()
            .find_map(|l| l.split_whitespace().next()?.parse().ok())
            .context("BIRD's route count reply has no number")
    }
}

/// Where BIRD is and what to write: `[announce]` resolved.
#[derive(Debug, Clone)]
pub struct Target {
    pub socket: PathBuf,
    pub file: PathBuf,
    pub protocol: String,
    pub vips: Vec<IpAddr>,
}

impl Target {
    /// Writes the file for `announce` and has BIRD load it.
    pub fn apply(&self, announce: bool) -> anyhow::Result<()> {
        write_file(&self.file, &render(&self.protocol, &self.vips, announce))?;
        Bird::connect(&self.socket, Duration::from_secs(2))?.configure()
    }

    /// The VIP routes BIRD holds now, over both protocols.
    pub fn routes(&self) -> anyhow::Result<usize> {
        let mut b = Bird::connect(&self.socket, Duration::from_secs(2))?;
        let mut n = 0;
        for (suffix, v4) in [("4", true), ("6", false)] {
            // A family without VIPs still has its (empty) protocol.
            let c = b.route_count(&format!("{}{suffix}", self.protocol))?;
            if self.vips.iter().any(|ip| ip.is_ipv4() == v4) || c > 0 {
                n += c;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_file_has_both_protocols_and_routes_only_when_announcing() {
        let vips: Vec<IpAddr> = vec![
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        let on = render("dnsrail", &vips, true);
        assert!(
            on.contains(
                "protocol static dnsrail4 {\n    ipv4;\n    route 192.0.2.53/32 unreachable;\n}\n"
            ),
            "{on}"
        );
        assert!(on.contains("protocol static dnsrail6 {\n    ipv6;\n    route 2001:db8::53/128 unreachable;\n}\n"), "{on}");
        assert_eq!(announced_routes(&on), 2);
        let off = render("dnsrail", &vips, false);
        assert!(
            off.contains("protocol static dnsrail4 {\n    ipv4;\n}\n"),
            "{off}"
        );
        assert!(
            off.contains("protocol static dnsrail6 {\n    ipv6;\n}\n"),
            "{off}"
        );
        assert_eq!(announced_routes(&off), 0);
    }

    /// A fake BIRD that answers each command from a script, as the real one
    /// does (the tests of the fleet run the real one).
    fn fake_bird(
        replies: Vec<&'static str>,
    ) -> (tempdir::Dir, std::thread::JoinHandle<Vec<String>>) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("bird.ctl");
        let l = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
            let mut got = Vec::new();
            for reply in replies {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 {
                    break;
                }
                got.push(l.trim_end().to_string());
                w.write_all(reply.as_bytes()).unwrap();
            }
            got
        });
        (dir, h)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let mut b = [0u8; 8];
                getrandom::getrandom(&mut b).unwrap();
                let p =
                    std::env::temp_dir().join(format!("dnsrail-bird-{}", u64::from_le_bytes(b)));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn replies_are_read_to_their_final_line() {
        let (dir, h) = fake_bird(vec![
            "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n",
            "1007-1 of 1 routes for 1 networks in table master4\n0000 \n",
            "9001 syntax error, unexpected CF_SYM_UNDEFINED, expecting CF_SYM_KNOWN\n",
            "0002-Reading configuration from /etc/bird/bird.conf\n8002 /etc/bird/bird.conf:3:1 syntax error\n",
            "1000-BIRD 2.0.12\n1011-Router ID is 10.0.0.1\n Hostname is x\n0013 Daemon is up and running\n",
        ]);
        let mut b = Bird::connect(&dir.path().join("bird.ctl"), Duration::from_secs(2)).unwrap();
        b.configure().unwrap();
        assert_eq!(b.route_count("dnsrail4").unwrap(), 1);
        let e = b.route_count("dnsrail4").unwrap_err().to_string();
        assert!(e.contains("does its configuration include the file"), "{e}");
        let e = b.configure().unwrap_err().to_string();
        assert!(e.contains("8002") && e.contains("syntax error"), "{e}");
        let r = b.command("show status").unwrap();
        assert_eq!(r.code, 13);
        assert_eq!(r.lines[2], "Hostname is x");
        drop(b);
        assert_eq!(
            h.join().unwrap(),
            [
                "configure",
                "show route protocol dnsrail4 count",
                "show route protocol dnsrail4 count",
                "configure",
                "show status"
            ]
        );
    }

    #[test]
    fn a_bird_that_hangs_up_mid_reply_is_an_error_not_a_hang() {
        let (dir, h) = fake_bird(vec!["0002-Reading configuration"]);
        let mut b = Bird::connect(&dir.path().join("bird.ctl"), Duration::from_secs(2)).unwrap();
        let t = std::thread::spawn(move || b.configure().unwrap_err().to_string());
        h.join().unwrap();
        let e = t.join().unwrap();
        assert!(
            e.contains("closed") || e.contains("timed out") || e.contains("Resource"),
            "{e}"
        );
    }

    #[test]
    fn no_bird_is_a_clear_error() {
        let e = Bird::connect(Path::new("/nonexistent/bird.ctl"), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("cannot reach BIRD at /nonexistent/bird.ctl"));
    }
}
