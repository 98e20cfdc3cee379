//! Slurm upgraded under a running client: the address that served 22.05 (v0.0.38) now
//! serves 24.11, which answers 404 for v0.0.38 paths. The client must detect the version
//! again and carry on. Two real clusters behind the loopback proxy play the two releases;
//! `tests/run-against-clusters` provides them as `SPS_UPGRADE_{OLD,NEW}_{URL,JWT}`.

mod support;

use slurm_client::{ApiVersion, ClientConfig, PingStatus, SlurmClient, TokenSource};
use support::proxy::Proxy;
use support::unique;

#[tokio::test]
async fn detects_the_version_again_after_an_upgrade() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(old_url), Some(old_jwt), Some(new_url), Some(new_jwt)) = (
        var("SPS_UPGRADE_OLD_URL"),
        var("SPS_UPGRADE_OLD_JWT"),
        var("SPS_UPGRADE_NEW_URL"),
        var("SPS_UPGRADE_NEW_JWT"),
    ) else {
        if var("SPS_REQUIRE_UPGRADE").as_deref() == Some("1") {
            panic!("SPS_REQUIRE_UPGRADE=1 but SPS_UPGRADE_{{OLD,NEW}}_{{URL,JWT}} are unset");
        }
        eprintln!("SKIPPED detects_the_version_again_after_an_upgrade: needs a 22.05 and a 24.11 cluster (SPS_UPGRADE_*)");
        return;
    };
    let hostport = |u: &str| {
        u.trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    };
    let proxy = Proxy::start(&hostport(&old_url)).await;
    let dir = std::env::temp_dir().join(unique("sc-upgrade"));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("jwt");
    std::fs::write(&token, &old_jwt).unwrap();

    let cfg = ClientConfig::new(
        proxy.url(),
        TokenSource::File(token.clone()),
        unique("upgrade"),
    );
    let client = SlurmClient::connect(cfg).await.unwrap();
    assert_eq!(client.version(), Some(ApiVersion::V0038));
    client.list_our_jobs().await.unwrap();

    // The upgrade: new daemons (and their token) at the same address.
    proxy.switch_upstream(&hostport(&new_url));
    std::fs::write(&token, &new_jwt).unwrap();
    client.list_our_jobs().await.unwrap();
    assert_eq!(client.version(), Some(ApiVersion::V0042));
    assert_eq!(client.ping().await.unwrap(), PingStatus::Up);
    std::fs::remove_dir_all(&dir).unwrap();
}
