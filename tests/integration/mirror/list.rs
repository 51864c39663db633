//! `gpuctl mirror-images list` on manifests written like a real ML platform's: images in
//! container fields, and also in ConfigMap data (JSON and YAML inside strings), env values,
//! args, annotations and a custom resource, next to decoy strings that are not images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::Work;
use crate::support::gpuctl::Gpuctl;

const DEPLOYMENT: &str = r#"# The notebook controller and its web app.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: notebook-controller
  namespace: kubeflow
  labels:
    app.kubernetes.io/name: notebook-controller
    version: v1.8.0
  annotations:
    sidecar.istio.io/proxyImage: docker.io/istio/proxyv2:1.17.5
    docs: https://www.kubeflow.org/docs/components/notebooks/
spec:
  replicas: 1
  template:
    spec:
      initContainers:
      - name: wait
        image: busybox:1.36
        command: ["sh", "-c", "until nslookup cache; do sleep 2; done"]
      containers:
      - name: manager
        image: ghcr.io/kubeflow/notebook-controller:v1.8.0
        args:
        - --sidecar-image=quay.io/oauth2-proxy/oauth2-proxy:7.4.0
        - --metrics-addr=:8080
        - --config=/etc/config/controller.yaml
        env:
        - name: USE_ISTIO
          value: "true"
        - name: NOTEBOOK_IMAGE
          value: kubeflownotebookswg/jupyter-scipy
        - name: CACHE_ADDR
          value: redis:6379
        resources:
          limits:
            nvidia.com/gpu: 1
---
apiVersion: v1
kind: Service
metadata:
  name: notebook-controller
  namespace: kubeflow
spec:
  ports:
  - port: 443
"#;

const CONFIGMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: jupyter-web-app-config
  namespace: kubeflow
data:
  notebook-images.json: |
    ["kubeflownotebookswg/jupyter-pytorch-cuda-full:v1.8.0",
     "kubeflownotebookswg/codeserver-python:v1.8.0"]
  spawner_ui_config.yaml: |
    spawnerFormDefaults:
      image:
        value: kubeflownotebookswg/jupyter-scipy:v1.8.0
        options:
        - kubeflownotebookswg/jupyter-scipy:v1.8.0
        - kubeflownotebookswg/jupyter-pytorch-full:v1.8.0
        - kubeflownotebookswg/jupyter-tensorflow-full:v1.8.0
      imagePullPolicy:
        value: IfNotPresent
      allowCustomImage: true
  APP_VERSION: v1.2.3
  UI_THEME: nginx
  HELP_URL: http://docs.example.com/app:1.0
  SCRIPT: /usr/local/bin/run.sh
"#;

const TRAINER: &str = r#"{
  "apiVersion": "ml.example.com/v1alpha1",
  "kind": "Trainer",
  "metadata": {"name": "resnet", "namespace": "team-a"},
  "spec": {
    "workerTemplate": {"baseImage": "nvcr.io/nvidia/pytorch:24.01-py3", "replicas": 2},
    "suggestion": {"algorithms": "registry.lab:5000/automl/hyperopt:v0.16.0,registry.lab:5000/automl/optuna:v0.16.0"}
  }
}
"#;

fn write_manifests(work: &Work) -> std::path::PathBuf {
    let root = work.path("manifests");
    std::fs::create_dir_all(root.join("apps/notebooks")).unwrap();
    std::fs::create_dir_all(root.join("crds")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join("apps/notebooks/deployment.yaml"), DEPLOYMENT).unwrap();
    std::fs::write(root.join("apps/notebooks/configmap.yml"), CONFIGMAP).unwrap();
    std::fs::write(root.join("crds/trainer.json"), TRAINER).unwrap();
    // Not manifests: other extensions and hidden directories are not read.
    std::fs::write(root.join("README.md"), "image: quay.io/not/read:1.0\n").unwrap();
    std::fs::write(root.join(".git/x.yaml"), "image: quay.io/not/read:2.0\n").unwrap();
    root
}

fn list(args: &[String]) -> crate::support::gpuctl::Outcome {
    Gpuctl::new()
        .args(["mirror-images", "list"])
        .args(args.iter().cloned())
        .run()
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn every_image_is_found_with_its_place_and_no_decoys() {
    let work = Work::new();
    let root = write_manifests(&work);
    let extra = work.images_file(&["registry.k8s.io/pause:3.9".to_string()]);
    let out = list(&[
        "--verbose".into(),
        "--images".into(),
        arg(&extra),
        "--manifests".into(),
        arg(&root),
    ])
    .success();
    let deploy = arg(&root.join("apps/notebooks/deployment.yaml"));
    let cm = arg(&root.join("apps/notebooks/configmap.yml"));
    let trainer = arg(&root.join("crds/trainer.json"));
    let d = "Deployment/kubeflow/notebook-controller";
    let c = "ConfigMap/kubeflow/jupyter-web-app-config";
    let t = "Trainer/team-a/resnet";
    let expected: Vec<(&str, String)> = vec![
        (
            "docker.io/istio/proxyv2:1.17.5",
            format!("{deploy}  {d}  metadata.annotations.sidecar.istio.io/proxyImage"),
        ),
        (
            "docker.io/kubeflownotebookswg/codeserver-python:v1.8.0",
            format!("{cm}  {c}  data.notebook-images.json > [1]"),
        ),
        (
            "docker.io/kubeflownotebookswg/jupyter-pytorch-cuda-full:v1.8.0",
            format!("{cm}  {c}  data.notebook-images.json > [0]"),
        ),
        (
            "docker.io/kubeflownotebookswg/jupyter-pytorch-full:v1.8.0",
            format!(
                "{cm}  {c}  data.spawner_ui_config.yaml > spawnerFormDefaults.image.options[1]"
            ),
        ),
        (
            "docker.io/kubeflownotebookswg/jupyter-scipy:latest",
            format!("{deploy}  {d}  spec.template.spec.containers[0].env[NOTEBOOK_IMAGE].value"),
        ),
        (
            "docker.io/kubeflownotebookswg/jupyter-scipy:v1.8.0",
            format!("{cm}  {c}  data.spawner_ui_config.yaml > spawnerFormDefaults.image.value"),
        ),
        (
            "docker.io/kubeflownotebookswg/jupyter-tensorflow-full:v1.8.0",
            format!(
                "{cm}  {c}  data.spawner_ui_config.yaml > spawnerFormDefaults.image.options[2]"
            ),
        ),
        (
            "docker.io/library/busybox:1.36",
            format!("{deploy}  {d}  spec.template.spec.initContainers[0].image"),
        ),
        (
            "ghcr.io/kubeflow/notebook-controller:v1.8.0",
            format!("{deploy}  {d}  spec.template.spec.containers[0].image"),
        ),
        (
            "nvcr.io/nvidia/pytorch:24.01-py3",
            format!("{trainer}  {t}  spec.workerTemplate.baseImage"),
        ),
        (
            "quay.io/oauth2-proxy/oauth2-proxy:7.4.0",
            format!("{deploy}  {d}  spec.template.spec.containers[0].args[0]"),
        ),
        ("registry.k8s.io/pause:3.9", format!("{}:2", arg(&extra))),
        (
            "registry.lab:5000/automl/hyperopt:v0.16.0",
            format!("{trainer}  {t}  spec.suggestion.algorithms"),
        ),
        (
            "registry.lab:5000/automl/optuna:v0.16.0",
            format!("{trainer}  {t}  spec.suggestion.algorithms"),
        ),
    ];
    let images: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    let want: Vec<&str> = expected.iter().map(|(r, _)| *r).collect();
    assert_eq!(images, want, "exactly these images, sorted\n{}", out.stdout);
    for (reference, place) in &expected {
        let block: Vec<&str> = out
            .stdout
            .lines()
            .skip_while(|l| l != reference)
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .map(str::trim)
            .collect();
        assert_eq!(
            block.first(),
            Some(&place.as_str()),
            "{reference}\n{}",
            out.stdout
        );
    }
    // The scipy image at v1.8.0 is named twice in the spawner config: both places shown.
    let scipy = out
        .stdout
        .lines()
        .skip_while(|l| *l != "docker.io/kubeflownotebookswg/jupyter-scipy:v1.8.0")
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .count();
    assert_eq!(scipy, 2, "{}", out.stdout);
    assert!(out.stderr.contains("14 images found"), "{}", out.stderr);
}

#[test]
fn default_output_shows_the_first_place_and_a_count() {
    let work = Work::new();
    let root = write_manifests(&work);
    let out = list(&["--manifests".into(), arg(&root.join("apps"))]).success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("docker.io/kubeflownotebookswg/jupyter-scipy:v1.8.0  "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.ends_with("spawnerFormDefaults.image.value  (+1 more place)"),
        "{line}"
    );
    assert!(
        !out.stdout.contains("nvcr.io"),
        "only the apps directory was read"
    );
}

#[test]
fn the_images_output_round_trips_through_the_images_file_parser() {
    let work = Work::new();
    let root = write_manifests(&work);
    let out = list(&[
        "--output".into(),
        "images".into(),
        "--manifests".into(),
        arg(&root),
    ])
    .success();
    let file = work.path("found.txt");
    std::fs::write(&file, &out.stdout).unwrap();
    let parsed = gpuctl::mirror::images_file::read(&file).unwrap_or_else(|e| panic!("{e}"));
    let refs: Vec<String> = parsed.iter().map(|i| i.reference.to_string()).collect();
    let sources: Vec<&str> = parsed.iter().map(|i| i.source.as_str()).collect();
    assert_eq!(refs.len(), 13, "{}", out.stdout);
    let mut sorted = refs.clone();
    sorted.sort();
    assert_eq!(refs, sorted);
    assert_eq!(
        sources,
        refs.iter().map(String::as_str).collect::<Vec<_>>(),
        "written normalised"
    );
    assert!(
        out.stdout.contains(&format!(
            "# from {}: Trainer/team-a/resnet spec.workerTemplate.baseImage\nnvcr.io/nvidia/pytorch:24.01-py3\n",
            arg(&root.join("crds/trainer.json"))
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn yaml_that_does_not_parse_is_named_with_its_line() {
    let work = Work::new();
    let root = work.path("broken");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("a.yaml"),
        "kind: ConfigMap\n---\nkind: Pod\nspec: [1, 2\nimage: x\n",
    )
    .unwrap();
    std::fs::write(root.join("b.json"), "{\n  \"kind\": \"Pod\",\n  oops\n}\n").unwrap();
    let out = list(&["--manifests".into(), arg(&root)]).code(2);
    let a = arg(&root.join("a.yaml"));
    assert!(out.stderr.contains(&format!("{a}:")), "{}", out.stderr);
    assert!(
        out.stderr.contains("document 2 is not valid YAML"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("{}:3: not valid JSON", arg(&root.join("b.json")))),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let out = list(&["--manifests".into(), arg(&work.path("missing"))]).code(2);
    assert!(out.stderr.contains("missing"), "{}", out.stderr);
    list(&[]).code(2);
}
