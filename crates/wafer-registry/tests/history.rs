//! Bounded histories: a function deployed over and over keeps its newest versions, and the
//! modules no kept version runs are deleted.
#![allow(clippy::unwrap_used)]

use wafer_abi::Abi;
use wafer_registry::{
    Digest, FunctionConfig, FunctionName, FunctionRecord, Registry, RegistryError, Update,
    MAX_RECORD_BYTES, MAX_VERSIONS,
};

async fn deploy(
    registry: &Registry,
    name: &FunctionName,
    wasm: Vec<u8>,
    config: FunctionConfig,
) -> u32 {
    let digest = Digest::of(&wasm);
    registry.put_module(&digest, wasm).await.unwrap();
    let (version, _) = registry
        .update(name, |current| {
            let mut record = current
                .cloned()
                .unwrap_or_else(|| FunctionRecord::new(name));
            let number = record
                .push(digest.clone(), Abi::Cgi, config.clone(), Vec::new())
                .version;
            Ok(Update::Write(record, number))
        })
        .await
        .unwrap();
    version
}

#[tokio::test]
async fn repeated_deploys_keep_the_newest_versions_and_their_modules_only() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let f: FunctionName = "f".parse().unwrap();
    let module = |i: u32| format!("(module) ;; {i}").into_bytes();
    // Each deploy is fsynced: 250 show what 1,100 would (the cluster test does 1,100).
    for i in 0..250 {
        assert_eq!(
            deploy(&registry, &f, module(i), FunctionConfig::default()).await,
            i + 1
        );
    }
    let (record, _) = registry.record(&f).await.unwrap().unwrap();
    assert_eq!(record.versions.len(), MAX_VERSIONS);
    assert_eq!((record.versions[0].version, record.active), (151, 250));
    let modules = std::fs::read_dir(dir.path().join("modules/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        modules, MAX_VERSIONS,
        "modules of forgotten versions were left behind"
    );
    let gone = registry.module(&Digest::of(&module(0))).await.unwrap_err();
    assert!(matches!(gone, RegistryError::ModuleNotFound(_)), "{gone}");
    registry.module(&Digest::of(&module(150))).await.unwrap();
    // Survives a restart.
    let registry = Registry::open(dir.path()).unwrap();
    assert_eq!(
        deploy(&registry, &f, module(250), FunctionConfig::default()).await,
        251
    );
    registry.remove(&f).await.unwrap();
    let modules = std::fs::read_dir(dir.path().join("modules/sha256"))
        .unwrap()
        .count();
    assert_eq!(modules, 0, "rm left modules no function runs");
}

#[tokio::test]
async fn a_record_with_large_configurations_keeps_fewer_versions_under_the_byte_cap() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let f: FunctionName = "f".parse().unwrap();
    let mut config = FunctionConfig::default();
    config.env.insert("BIG".into(), "x".repeat(20 << 10));
    for i in 0..60u32 {
        deploy(
            &registry,
            &f,
            format!("(module) ;; {i}").into_bytes(),
            config.clone(),
        )
        .await;
    }
    let (record, _) = registry.record(&f).await.unwrap().unwrap();
    let size = serde_json::to_vec(&*record).unwrap().len();
    assert!(size <= MAX_RECORD_BYTES, "{size}");
    assert!(record.versions.len() < 60 && record.versions.len() > 10);
    assert_eq!(record.active, 60);
}
