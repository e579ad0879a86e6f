//! What users see: the CRD file, schema validation, and `kubectl get vbsbackups`.

use crate::harness::*;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::json;
use vbs_operator::crd::VbsBackup;

#[test]
fn crd_command_prints_the_committed_crds() {
    let crd = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vbs-operator"))
            .arg("crd")
            .args(args)
            .output()
            .expect("run crd");
        assert!(out.status.success(), "crd {args:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let committed = |kind: &str| {
        std::fs::read_to_string(format!("{}/crds/{kind}.yaml", env!("CARGO_MANIFEST_DIR")))
            .expect("committed CRD")
    };
    for kind in ["vbsbackup", "cbrbackup"] {
        assert!(
            crd(&[kind]) == committed(kind),
            "crds/{kind}.yaml differs from `vbs-operator crd {kind}`"
        );
    }
    assert_eq!(
        crd(&[]),
        committed("vbsbackup") + &committed("cbrbackup"),
        "both, one document each"
    );
}

#[tokio::test]
async fn invalid_specs_are_refused_by_the_schema() {
    let env = TestEnv::new("invalid").await;
    let cases = [
        (
            json!({"backupId": "not-a-uuid", "cloudRef": {"secretName": "s"}}),
            "spec.backupId",
        ),
        (
            json!({"backupId": REFERENCE_ID, "cloudRef": {"secretName": ""}}),
            "spec.cloudRef.secretName",
        ),
        (json!({"backupId": REFERENCE_ID}), "spec.cloudRef"),
        (
            json!({"backupId": REFERENCE_ID, "cloudRef": {"secretName": "s"}, "pollInterval": "ten minutes"}),
            "spec.pollInterval",
        ),
    ];
    // Raw JSON through the dynamic API: the Rust type would refuse some of these before the server.
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(env.client.clone(), &env.ns, &ApiResource::erase::<VbsBackup>(&()));
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let name = format!("bad-{i}");
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "vbs.io/v1alpha1", "kind": "VbsBackup", "metadata": {"name": name}, "spec": spec
        }))
        .expect("dynamic object");
        let err = api.create(&PostParams::default(), &obj).await.expect_err(field);
        let kube::Error::Api(status) = err else {
            panic!("unexpected error {err}")
        };
        assert_eq!(status.code, 422, "{field}: {status:?}");
        assert!(
            status.message.contains(field),
            "{field} named in: {}",
            status.message
        );
        assert!(
            env.backups().get_opt(&name).await.expect("get").is_none(),
            "nothing was stored"
        );
    }
}

#[tokio::test]
async fn kubectl_shows_the_columns() {
    let env = TestEnv::running("kubectl", reference_backup()).await;
    env.create_backup("db-nightly", REFERENCE_ID, "pw").await;
    env.wait_status("db-nightly", "Synced=True", |s| {
        is(s, "Synced", ("True", "QuerySucceeded"))
    })
    .await;

    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .args(args)
            .args(["-n", &env.ns])
            .env("KUBECONFIG", kubeconfig())
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let table = kubectl(&["get", "vbsbackups"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "BACKUP",
            "ID",
            "STATUS",
            "SIZE",
            "INCREMENTAL",
            "DEPENDENTS",
            "SYNCED",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..7],
        ["db-nightly", REFERENCE_ID, "error", "1", "false", "false", "True"]
    );

    let wide = kubectl(&["get", "vbsb", "-o", "wide"]);
    let header = wide.lines().next().expect("header");
    assert!(
        header.contains("VOLUME") && header.contains("FAIL REASON"),
        "{header}"
    );
    assert!(
        wide.contains("2748f2f2-4394-4e6e-af8d-8dd34496c024") && wide.contains("Connection to swift failed"),
        "{wide}"
    );
}
