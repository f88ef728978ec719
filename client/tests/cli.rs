//! The `escape` binary as a member uses it, against a real server (started in-process on an
//! ephemeral port): the README's walkthrough, JSON output and exit codes.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::new_deployment;

struct Cli<'a> {
    config_dir: &'a Path,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_escape"))
            .args(args)
            .env("ESCAPE_CONFIG_DIR", self.config_dir)
            .env_remove("ESCAPE_PROFILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn escape");
        {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).expect("write stdin");
            }
        }
        child.wait_with_output().expect("escape runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "escape {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(self.ok(&all).trim()).expect("JSON output")
    }

    fn code(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_works_from_the_command_line() {
    let (_data, _keys, done, config) = new_deployment();
    let config_dir = tempfile::tempdir().expect("tempdir");
    let server = escape_server::start(config).await.expect("start");
    let addr = server.local_addr().to_string();
    let cli = Cli {
        config_dir: config_dir.path(),
    };

    // Before any import, the client says what to do.
    let (code, stderr) = cli.code(&["whoami"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("escape profile import"), "{stderr}");

    let profile = done.admin_profile.to_str().expect("path");
    let out = cli.ok(&["profile", "import", profile, "--server", &addr]);
    assert!(out.contains("it is the default"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = config_dir.path().join("profiles/admin/key.pem");
        let mode = std::fs::metadata(key)
            .expect("key stored")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let me = cli.json(&["whoami"]);
    assert_eq!(me["name"], "admin");
    assert_eq!(me["admin"], true);

    assert!(
        cli.ok(&["room", "create", "ops", "--topic", "incident 42"])
            .contains("created ops")
    );
    let rooms = cli.json(&["rooms"]);
    assert_eq!(rooms[0]["name"], "ops");
    assert_eq!(rooms[0]["joined"], true);

    let sent = cli.json(&["send", "ops", "first", "message"]);
    assert_eq!(sent["seq"], 1);
    let out = cli.run_with_stdin(&["send", "ops"], Some("from stdin\n"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("#2"));
    let retry = cli.json(&["send", "ops", "again", "--client-msg-id", "fixed"]);
    let retry2 = cli.json(&["send", "ops", "again", "--client-msg-id", "fixed"]);
    assert_eq!(retry["seq"], retry2["seq"]);
    assert_eq!(retry2["duplicate"], true);

    let page = cli.json(&["history", "ops"]);
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"]["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["first message", "from stdin", "again"]);
    let human = cli.ok(&["history", "ops", "--limit", "1"]);
    assert!(
        human.contains("admin: again") && human.contains("--before 3"),
        "{human}"
    );

    // tail replays from a sequence and stops after --count.
    let tailed = cli.ok(&["--json", "tail", "ops", "--since", "1", "--count", "2"]);
    let seqs: Vec<u64> = tailed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json line")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, [2, 3]);

    // Files: encrypted here, shared, listed, downloaded and verified.
    let work = tempfile::tempdir().expect("tempdir");
    let report = work.path().join("report.txt");
    std::fs::write(&report, "indicators of compromise\n".repeat(1000)).expect("write");
    let shared = cli.json(&["upload", "ops", report.to_str().expect("path")]);
    assert_eq!(shared["name"], "report.txt");
    let id = shared["id"].as_str().expect("id").to_owned();
    let listed = cli.json(&["files", "ops"]);
    assert_eq!(listed[0]["id"], id.as_str());
    let copy = work.path().join("copy.txt");
    let copy_arg = copy.to_str().expect("path");
    let out = cli.ok(&["download", "ops", &id, "-o", copy_arg]);
    assert!(out.contains("verified"), "{out}");
    assert_eq!(
        std::fs::read(&copy).expect("copy"),
        std::fs::read(&report).expect("report")
    );
    let (code, stderr) = cli.code(&["download", "ops", &id, "-o", copy_arg]);
    assert_eq!(code, 9, "an existing file is not overwritten: {stderr}");
    let history = cli.ok(&["history", "ops", "--limit", "1"]);
    assert!(history.contains("shared a file: report.txt"), "{history}");

    // Indicators from a file: each line accepted or rejected with its line number; TLP first.
    let iocs = work.path().join("iocs.txt");
    std::fs::write(
        &iocs,
        "# campaign X\n198.51.100[.]7\n300.1.1.1\nhxxp://evil[.]example/x\n",
    )
    .expect("write");
    let out = cli.ok(&[
        "ioc",
        "share",
        "ops",
        "--tlp",
        "amber",
        iocs.to_str().expect("path"),
    ]);
    assert!(out.contains("rejected line 3 (300.1.1.1)"), "{out}");
    assert!(out.contains("2 accepted, 1 rejected"), "{out}");
    let listed = cli.ok(&["ioc", "list", "ops"]);
    assert!(
        listed.lines().all(|l| l.starts_with("TLP:AMBER")),
        "{listed}"
    );
    assert!(listed.contains("http://evil.example/x"), "{listed}");
    let found = cli.json(&["ioc", "search", "198.51.100.7"]);
    assert_eq!(found[0]["indicator"]["tlp"], "TLP:AMBER");

    // Exit codes say what kind of failure it was.
    assert_eq!(cli.code(&["history", "nowhere"]).0, 6);
    assert_eq!(cli.code(&["room", "create", "ops"]).0, 7);
    let (code, stderr) = cli.code(&["join", "Bad Name"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(cli.code(&["--profile", "nobody", "whoami"]).0, 3);

    server.shutdown().await;
    let (code, stderr) = cli.code(&["whoami"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_enrolls_from_the_command_line() {
    let (_data, _keys, done, mut config) = new_deployment();
    let admin_home = tempfile::tempdir().expect("tempdir");
    let applicant_home = tempfile::tempdir().expect("tempdir");
    config.vetting.sponsors_required = 1;
    let server = escape_server::start(config).await.expect("start");
    let addr = server.local_addr().to_string();
    let admin = Cli {
        config_dir: admin_home.path(),
    };
    let applicant = Cli {
        config_dir: applicant_home.path(),
    };
    admin.ok(&[
        "profile",
        "import",
        done.admin_profile.to_str().expect("path"),
        "--server",
        &addr,
    ]);

    let invite = admin.json(&["invite", "create", "--expires", "2h"]);
    let code = invite["code"].as_str().expect("code");
    let enroll_address = invite["enroll_address"].as_str().expect("address");
    assert_eq!(enroll_address, server.enroll_addr().to_string());

    let applied = applicant.json(&[
        "enroll",
        "--server",
        enroll_address,
        "--invite",
        code,
        "--name",
        "Ana Tamm",
        "--email",
        "ana@cert.example",
        "--org",
        "CERT-EE",
        "--country",
        "ee",
        "--sector",
        "government",
    ]);
    let id = applied["application"].as_str().expect("id").to_owned();
    let out = applicant.ok(&["enroll", "status"]);
    assert!(out.contains("pending: 0 of 1 vouches"), "{out}");
    let (code_used, _) = applicant.code(&[
        "enroll",
        "--server",
        enroll_address,
        "--invite",
        code,
        "--name",
        "Max",
        "--email",
        "max@x.example",
        "--org",
        "X",
        "--country",
        "DE",
    ]);
    assert_eq!(code_used, 5, "an invitation admits one application");

    let listed = admin.ok(&["admin", "applications", "--status", "pending"]);
    assert!(
        listed.contains(&id) && listed.contains("Ana Tamm"),
        "{listed}"
    );
    assert!(
        admin
            .ok(&["vouch", &id, "--comment", "known from FIRST"])
            .contains("1 of 1")
    );
    let shown = admin.ok(&["admin", "application", "show", &id]);
    assert!(
        shown.contains("self-declared") && shown.contains("known from FIRST"),
        "{shown}"
    );
    let approved = admin.json(&["admin", "approve", &id, "--attr", "role=cert-lead"]);
    let member_id = approved["member_id"]
        .as_str()
        .expect("member id")
        .to_owned();

    let out = applicant.ok(&["enroll", "status"]);
    assert!(
        out.contains("approved") && out.contains("ana-tamm"),
        "{out}"
    );
    // The profile carries the public address written at init (port 0 here): point it at the server.
    applicant.ok(&["profile", "set-server", "ana-tamm", &addr]);
    let me = applicant.json(&["--profile", "ana-tamm", "whoami"]);
    assert_eq!(me["id"], member_id.as_str());
    assert_eq!(me["attributes"]["role"], "cert-lead");

    let directory = admin.ok(&["directory", "--org", "CERT-EE"]);
    assert!(directory.contains("Ana Tamm"), "{directory}");
    assert!(applicant.ok(&["renew"]).contains("renewed"));
    applicant.json(&["--profile", "ana-tamm", "whoami"]);

    assert!(
        admin
            .ok(&["admin", "suspend", &member_id, "--reason", "review"])
            .contains("Suspended")
    );
    let (code, stderr) = applicant.code(&["whoami"]);
    assert_eq!(code, 5, "{stderr}");
    let history = admin.ok(&["admin", "member", "history", &member_id]);
    assert!(
        history.contains("status: Active -> Suspended") && history.contains("(review)"),
        "{history}"
    );
    server.shutdown().await;
}
