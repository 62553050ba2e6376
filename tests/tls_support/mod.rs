//! TLS helpers shared by the tests that need real TLS peers: certificates
//! made with the openssl CLI (Debian's `openssl`) and `openssl s_server`.

// Each test file compiles this module on its own and uses a different part.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{self, closed_port, try_connect, Server, TempDir, DEADLINE};

/// Where the peers come from (scripts/test.sh installs them).
pub const INSTALL: &str = "apt-get install openssl curl redis-tools";

/// Certificates made for one test: a CA, a leaf it signed for `localhost`
/// and `127.0.0.1`, the same leaf expired, a self-signed leaf, another CA.
pub struct Certs {
    dir: TempDir,
}

impl Certs {
    pub fn make() -> Certs {
        let dir = TempDir::new("tls-certs");
        let path = |name: &str| dir.file(name);
        std::fs::write(
            path("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            openssl(
                &[
                    &["req", "-x509"][..],
                    &key,
                    &[
                        "-keyout",
                        &path(&format!("{ca}.key")),
                        "-out",
                        &path(&format!("{ca}.pem")),
                        "-days",
                        "2",
                        "-subj",
                        &format!("/CN=lunet test {ca}"),
                    ],
                ]
                .concat(),
            );
        }
        openssl(
            &[
                &["req"][..],
                &key,
                &[
                    "-keyout",
                    &path("leaf.key"),
                    "-out",
                    &path("leaf.csr"),
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        for (name, days) in [("leaf.pem", "2"), ("expired.pem", "-1")] {
            openssl(&[
                "x509",
                "-req",
                "-in",
                &path("leaf.csr"),
                "-CA",
                &path("ca.pem"),
                "-CAkey",
                &path("ca.key"),
                "-CAcreateserial",
                "-out",
                &path(name),
                "-days",
                days,
                "-extfile",
                &path("leaf.ext"),
            ]);
        }
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path("leaf.csr"),
            "-signkey",
            &path("leaf.key"),
            "-out",
            &path("self-signed.pem"),
            "-days",
            "2",
            "-extfile",
            &path("leaf.ext"),
        ]);
        Certs { dir }
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.file(name)
    }

    /// The test script `script` serving `cert` (a file of this set) with
    /// the leaf's key (`cert=`, `key=`), and `extra` arguments; waits for
    /// `listeners` listening ports.
    pub fn serve(&self, script: &str, cert: &str, extra: &[&str], listeners: usize) -> Server {
        let cert = format!("cert={}", self.file(cert));
        let key = format!("key={}", self.file("leaf.key"));
        let mut args = vec![cert.as_str(), key.as_str()];
        args.extend_from_slice(extra);
        Server::start_listeners(&common::test_script(script), &args, listeners)
    }
}

/// Runs the openssl CLI; fails the test with its stderr unless it succeeds.
#[track_caller]
pub fn openssl(args: &[&str]) {
    let output = common::run_with_input(Command::new("openssl").args(args), b"");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Bytes a tool printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `openssl s_server` serving `cert` (a file of a [`Certs`]) on a free
/// port in a mode (`-rev`: each line back reversed; `-www`: an HTML page
/// of the session over HTTP/1.0), killed on drop.
pub struct SServer {
    child: Child,
    pub port: u16,
}

impl SServer {
    pub fn start(certs: &Certs, cert: &str, mode: &[&str]) -> SServer {
        for _ in 0..5 {
            let port = closed_port();
            let mut child = Command::new("openssl")
                .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
                .args(["-cert", &certs.file(cert), "-key", &certs.file("leaf.key")])
                .args(mode)
                .arg("-quiet")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start openssl s_server: {e}; {INSTALL}"));
            let deadline = Instant::now() + DEADLINE;
            while Instant::now() < deadline {
                if child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                // A probe it takes for a failed handshake and goes on.
                if try_connect(port).is_ok() {
                    return SServer { child, port };
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("openssl s_server did not start on a free port within {DEADLINE:?} (5 tries)");
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
