//! `orderstream watch`: one frame for scripts (`--once`) shows every partition owned by the
//! live group member and caught up; the live view runs in a real terminal (tmux), redraws in
//! place and stops on Ctrl-C.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use orderstream_testkit::TestEnv;
use support::{interrupt, orderstream, start, text};

/// The partition table of a frame: [partition, owner, high, committed, lag..., consumed/s].
fn rows(frame: &str) -> Vec<Vec<String>> {
    frame
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("partition"))
        .skip(1)
        .take_while(|l| !l.starts_with("totals:"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Applies a prefixed layout and produces `events`; returns the layout file and the orders topic.
fn setup(env: &TestEnv, test: &str, events: &str) -> (String, String) {
    let (layout, names) = env.topology_file(test);
    let layout = layout.to_str().expect("utf-8").to_owned();
    let out = orderstream(env, &["--topology", &layout, "topics", "apply"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = orderstream(
        env,
        &[
            "--topology",
            &layout,
            "produce",
            "--count",
            events,
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let orders = names
        .get(orderstream_topology::TopicRole::Orders)
        .to_owned();
    (layout, orders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_shows_each_partition_owned_and_caught_up() {
    let env = TestEnv::connect().await;
    let (layout, orders) = setup(&env, "watch-once", "300");
    // Two records the consumer cannot decode: they end up as dead letters.
    let producer = env.producer();
    for key in ["poison-1", "poison-2"] {
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&orders)
                    .key(key)
                    .payload("not avro"),
                Duration::from_secs(10),
            )
            .await
            .expect("poison record acknowledged");
    }
    let group = env.group_id("watch-once");
    let consumer = start(
        &env,
        &[
            "--topology",
            &layout,
            "consume",
            "--group",
            &group,
            "--for",
            "300",
        ],
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut frame, mut table) = (String::new(), Vec::new());
    while Instant::now() < deadline {
        let out = orderstream(
            &env,
            &["--topology", &layout, "watch", "--once", "--group", &group],
        );
        assert!(out.status.success(), "{:?}", text(&out));
        frame = text(&out).0;
        table = rows(&frame);
        let done = table.len() == 6
            && table
                .iter()
                .all(|r| r.len() == 6 && r[1].starts_with("m1:") && r[2] == r[3] && r[4] == "0");
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let consumed = interrupt(consumer);
    assert!(consumed.status.success(), "{:?}", text(&consumed));
    eprintln!("{frame}");
    assert_eq!(table.len(), 6, "6 partitions:\n{frame}");
    let mut high_total = 0;
    for (i, r) in table.iter().enumerate() {
        assert_eq!(r.len(), 6, "row {r:?}:\n{frame}");
        assert_eq!(r[0], i.to_string(), "{frame}");
        // Owner: the only member, as `m1:<client id>@<host>`.
        assert!(r[1].starts_with("m1:rdkafka@"), "owner of {r:?}:\n{frame}");
        assert_eq!(r[2], r[3], "committed == high watermark: {r:?}\n{frame}");
        assert_eq!(r[4], "0", "lag 0: {r:?}\n{frame}");
        high_total += r[2].parse::<i64>().expect("high watermark");
    }
    assert_eq!(high_total, 302, "300 events + 2 poison records:\n{frame}");
    assert!(
        frame.contains(&format!("group: {group}   state: Stable")),
        "{frame}"
    );
    assert!(frame.contains("members: 1"), "{frame}");
    assert!(frame.contains("totals: lag 0 |"), "{frame}");
    // The latest dead letters: the two poison records, with class and source.
    let letters: Vec<&str> = frame
        .lines()
        .skip_while(|l| !l.starts_with("latest dead letters ("))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(letters.len(), 2, "{frame}");
    for l in &letters {
        assert!(l.contains("bad_magic"), "{l}\n{frame}");
        assert!(l.contains(&format!("{orders}/")), "source topic: {l}");
    }
    // The members section lists the orders partitions of m1.
    assert!(frame.contains("orders.events[0,"), "{frame}");
    assert!(
        !frame.contains('\x1b'),
        "no escapes when stdout is not a terminal"
    );
}

/// A tmux server on a private socket, killed (and its socket removed) on drop.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("run tmux")
    }

    fn stdout(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "tmux {args:?}: {:?}", text(&out));
        text(&out).0
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_in_a_terminal_redraws_and_stops_on_ctrl_c() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let env = TestEnv::connect().await;
    let (layout, _) = setup(&env, "watch-tty", "60");
    // A group that does not exist: the view must say so, not fail.
    let group = env.group_id("watch-tty");
    let tmux = Tmux {
        socket: std::env::temp_dir().join(format!("{}.tmux", env.unique("orderstream-watch"))),
    };
    // The exit status goes through a file written by bash, not through tmux's
    // `pane_dead_status`: under load tmux 3.3a reported the pane dead without ever filling in
    // the status. Bash in `-c` mode waits for a foreground child that handles SIGINT itself and
    // then runs the next command; had `watch` died of the signal, bash would die with it and
    // the file would never appear.
    let exit_file = std::env::temp_dir().join(format!("{}.exit", env.unique("orderstream-watch")));
    let _ = std::fs::remove_file(&exit_file);
    let watch = [
        "env".to_owned(),
        format!("ORDERSTREAM_BOOTSTRAP={}", quote(&env.bootstrap)),
        format!("ORDERSTREAM_REGISTRY_URL={}", quote(&env.registry_url)),
        "RUST_LOG=warn".to_owned(),
        quote(env!("CARGO_BIN_EXE_orderstream")),
        "--topology".to_owned(),
        quote(&layout),
        "watch".to_owned(),
        "--group".to_owned(),
        quote(&group),
        "--interval".to_owned(),
        "1".to_owned(),
    ]
    .join(" ");
    let exit_path = exit_file.to_str().expect("utf-8 temp dir");
    let command = format!(
        "exec bash -c {}",
        quote(&format!(
            "{watch}; echo $? > {tmp}; mv {tmp} {exit}",
            tmp = quote(&format!("{exit_path}.tmp")),
            exit = quote(exit_path),
        ))
    );
    // Keep the pane after the process exits, to read what it printed last.
    tmux.stdout(&[
        "new-session",
        "-d",
        "-s",
        "watch",
        "-x",
        "200",
        "-y",
        "50",
        &command,
        ";",
        "set-option",
        "-t",
        "watch",
        "remain-on-exit",
        "on",
    ]);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pane = tmux.stdout(&["capture-pane", "-p", "-t", "watch"]);
    // A frame reaches the terminal in several writes: wait for its first and its last line.
    let drawn = |p: &str| p.contains("orderstream watch — cluster") && p.contains("Ctrl-C to stop");
    while !drawn(&pane) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        pane = tmux.stdout(&["capture-pane", "-p", "-t", "watch"]);
    }
    let artifacts = orderstream_testkit::repo_root().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).expect("mkdir target/artifacts");
    std::fs::write(artifacts.join("watch.txt"), &pane).expect("write artifact");

    let first = pane.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        first.starts_with("orderstream watch — cluster"),
        "the frame is drawn from the top of a cleared screen:\n{pane}"
    );
    assert_eq!(
        pane.matches("totals:").count(),
        1,
        "frames redraw in place (ANSI clear), not scroll:\n{pane}"
    );
    assert!(
        pane.contains(&format!("group: {group}   state: Dead   members: 0")),
        "{pane}"
    );
    let table = rows(&pane);
    assert_eq!(table.len(), 6, "6 partition rows:\n{pane}");
    for (i, r) in table.iter().enumerate() {
        assert_eq!(r[0], i.to_string(), "{pane}");
        assert_eq!(r[1], "-", "no owner: {pane}");
        assert_eq!(r[3], "none", "{pane}");
        assert!(r.join(" ").contains("no commits yet"), "{pane}");
    }
    assert!(pane.contains("totals: lag no commits yet"), "{pane}");
    assert!(pane.contains("Ctrl-C to stop"), "{pane}");

    tmux.stdout(&["send-keys", "-t", "watch", "C-c"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&exit_file) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "watch did not exit within 30 s of Ctrl-C (or died of the signal, taking bash with it):\n{}",
            tmux.stdout(&["capture-pane", "-p", "-t", "watch"])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = std::fs::remove_file(&exit_file);
    assert_eq!(status.trim(), "0", "watch exits 0 after Ctrl-C");
}
