//! The cloud's container image: `scripts/build-cloud-image.sh` builds it (a no-op build when
//! `scripts/test.sh` has just done so), and this checks what a cluster will see: the OCI config
//! (a non-root user, the entrypoint, port 8090), a root file system with nothing but the binary,
//! the CA certificates, passwd and group (no shell), and then runs it with runc, an OCI runtime
//! (podman cannot start containers in this sandbox: docs/decisions.md), from the unpacked image
//! and the runtime config umoci derives from it, read-only as the Kubernetes manifests run it,
//! on the host's network: `migrate` into a fresh database, then `serve` until `/healthz` and
//! `/readyz` answer, then SIGTERM, on which it must exit 0 (graceful shutdown).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use sentra_system_tests::{Db, START, eventually, http};

use crate::systemd::repo;

/// The image's user and group (scripts/build-cloud-image.sh).
const IMAGE_UID: u64 = 65532;
const ENTRYPOINT: &str = "/usr/local/bin/sentra-cloud";

/// Everything the image's root file system may hold: no shell, no libc, no package manager.
const ROOTFS: &[&str] = &[
    "etc",
    "etc/group",
    "etc/passwd",
    "etc/ssl",
    "etc/ssl/certs",
    "etc/ssl/certs/ca-certificates.crt",
    "tmp",
    "usr",
    "usr/local",
    "usr/local/bin",
    "usr/local/bin/sentra-cloud",
    "var",
    "var/lib",
    "var/lib/sentra-cloud",
];

/// Builds the image; returns the OCI layout and the tag.
fn build_image() -> (PathBuf, String) {
    let out = Command::new("bash")
        .arg(repo().join("scripts/build-cloud-image.sh"))
        .current_dir(repo())
        .output()
        .expect("run scripts/build-cloud-image.sh");
    assert!(
        out.status.success(),
        "scripts/build-cloud-image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .expect("the script prints <layout>:<tag>");
    let (layout, tag) = last.rsplit_once(':').expect("<layout>:<tag>");
    let layout = PathBuf::from(layout);
    let layout = if layout.is_absolute() {
        layout
    } else {
        repo().join(layout)
    };
    (layout, tag.to_owned())
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A blob of the layout by its digest (`sha256:<hex>`).
fn blob(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    read_json(&layout.join("blobs/sha256").join(hex))
}

/// The image's manifest for `tag`.
fn manifest(layout: &Path, tag: &str) -> Value {
    let index = read_json(&layout.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .expect("index.json lists manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {index}"));
    blob(layout, entry["digest"].as_str().expect("a digest"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the rootfs") {
            let path = entry.expect("an entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                stack.push(path);
            }
            found.insert(relative);
        }
    }
    found
}

/// A runc container, deleted (killed if need be) when dropped.
struct Container {
    id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn container_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "sentra-cloud-image-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Rewrites the bundle's runtime config for one command: the image's own user and environment
/// plus `env`, the host's network (so the machine's PostgreSQL and Redis on 127.0.0.1 are
/// reachable, as `podman --network=host` would), a read-only root with a tmpfs /tmp (as the
/// manifests' readOnlyRootFilesystem), no terminal.
fn configure(bundle: &Path, args: &[&str], env: &[(&str, &str)]) {
    let path = bundle.join("config.json");
    let mut config = read_json(&path);
    assert_eq!(
        config["process"]["user"]["uid"], IMAGE_UID,
        "the runtime config umoci derives from the image runs it as uid {IMAGE_UID}: {}",
        config["process"]["user"]
    );
    assert_eq!(config["process"]["user"]["gid"], IMAGE_UID);
    config["process"]["args"] = json!(args);
    config["process"]["terminal"] = json!(false);
    let vars = config["process"]["env"]
        .as_array_mut()
        .expect("the image's environment");
    assert!(
        vars.iter()
            .any(|v| v == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "the image points TLS clients at its CA bundle: {vars:?}"
    );
    vars.extend(env.iter().map(|(k, v)| json!(format!("{k}={v}"))));
    config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|ns| ns["type"] != "network");
    config["root"]["readonly"] = json!(true);
    config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]
        }));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_image_is_static_non_root_and_serves_health() {
    assert!(
        crate::static_binary::is_root(),
        "this test unpacks the image and runs it with runc: run it as root (CI and scripts/test.sh do)"
    );
    let (layout, tag) = build_image();

    // What a cluster reads before it runs anything: the image's config.
    let manifest = manifest(&layout, &tag);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let image = blob(
        &layout,
        manifest["config"]["digest"].as_str().expect("config"),
    );
    assert_eq!(image["os"], "linux");
    assert_eq!(image["architecture"], "amd64");
    let config = &image["config"];
    assert_eq!(config["User"], format!("{IMAGE_UID}:{IMAGE_UID}"));
    assert_eq!(config["Entrypoint"], json!([ENTRYPOINT]));
    assert_eq!(config["Cmd"], json!(["serve"]));
    assert!(
        config["ExposedPorts"].get("8090/tcp").is_some(),
        "port 8090 is exposed: {config}"
    );
    assert_eq!(config["Labels"]["org.opencontainers.image.version"], tag);
    eprintln!(
        "sentra-cloud image {tag}: layer {} bytes compressed ({})",
        layers[0]["size"],
        layers[0]["digest"].as_str().unwrap_or("?")
    );

    // Its files: exactly the binary, the CA bundle and the user's entries.
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let files = tree(&rootfs);
    let expected: BTreeSet<String> = ROOTFS.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(files, expected, "the image's root file system");
    assert!(!rootfs.join("bin/sh").exists(), "no shell in the image");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("sentra:x:{IMAGE_UID}:{IMAGE_UID}:"))),
        "/etc/passwd names the image's user: {passwd}"
    );
    let bin = rootfs.join("usr/local/bin/sentra-cloud");
    let dynamic = run(Command::new("readelf").arg("-d").arg(&bin));
    assert!(!dynamic.contains("NEEDED"), "static binary:\n{dynamic}");
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(&bin).expect("stat the binary");
        assert_eq!(
            (meta.uid(), meta.mode() & 0o7777),
            (0, 0o755),
            "the binary is root's and not writable by the service's user"
        );
        let state = std::fs::metadata(rootfs.join("var/lib/sentra-cloud")).expect("stat");
        assert_eq!(u64::from(state.uid()), IMAGE_UID);
    }

    // Run it: migrate a fresh database, then serve it.
    let db = Db::create().await;
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("SENTRA_CLOUD__HTTP__LISTEN", "127.0.0.1:0"),
        ("RUST_LOG", "warn"),
    ];
    configure(&bundle, &[ENTRYPOINT, "migrate"], &env);
    let migrate = Container { id: container_id() };
    let out = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&migrate.id)
        .stdin(Stdio::null())
        .output()
        .expect("run runc (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "migrate in the image: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(migrate);

    configure(&bundle, &[ENTRYPOINT, "serve"], &[]);
    let serve = Container { id: container_id() };
    let mut child = tokio::process::Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&serve.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn runc");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(START, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.trim().to_owned();
            }
        }
        panic!("serve in the image exited before listening");
    })
    .await
    .expect("serve in the image listened in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let client = http();
    for path in ["/healthz", "/readyz"] {
        let url = format!("http://{addr}{path}");
        eventually(START, &format!("{path} of the image to answer 200"), || {
            let client = client.clone();
            let url = url.clone();
            async move {
                let response = client.get(&url).send().await.ok()?;
                (response.status() == 200).then_some(())
            }
        })
        .await;
    }

    // SIGTERM, as Kubernetes stops a pod: a clean exit, not a kill.
    run(Command::new("runc").args(["kill", &serve.id, "TERM"]));
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("serve stopped after SIGTERM")
        .expect("wait for runc");
    assert!(status.success(), "serve in the image on SIGTERM: {status}");
}

#[test]
fn the_build_scripts_pass_shellcheck() {
    for script in ["scripts/build-static.sh", "scripts/build-cloud-image.sh"] {
        let path = repo().join(script);
        run(Command::new("bash").arg("-n").arg(&path));
        run(Command::new("shellcheck").arg(&path));
    }
}
