//! The Harbor fixture (`tests/lab/fixtures/harbor-api`, which says what it stands in for)
//! in front of a real registry, on 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::registry::{TestRegistry, free_port, http_status};

pub struct HarborFixture {
    pub addr: String,
    child: Child,
}

impl HarborFixture {
    /// Harbor with one user `user:password`, who may create projects when `may_create`.
    pub fn start(backend: &TestRegistry, user: &str, password: &str, may_create: bool) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/fixtures/harbor-api");
        let child = Command::new("python3")
            .arg(script)
            .args(["--listen", &addr, "--backend", &backend.addr])
            .args(["--htpasswd-user", &format!("{user}:{password}")])
            .args(["--may-create", if may_create { user } else { "nobody" }])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install the python3 package"));
        let mut fixture = HarborFixture { addr, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_status(&fixture.addr, "/api/v2.0/systeminfo") != Some(200) {
            if let Ok(Some(status)) = fixture.child.try_wait() {
                panic!("the Harbor fixture exited with {status} before answering");
            }
            assert!(
                Instant::now() < deadline,
                "the Harbor fixture did not answer on {} within 20 s",
                fixture.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        fixture
    }
}

impl Drop for HarborFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
