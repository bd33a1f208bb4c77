//! `wafer-bench propagation ADMIN A B TOKEN MODULE1 MODULE2 N`: the time from a deploy
//! answered on node A of a cluster (its admin listener ADMIN) until node B serves the new version, over N deploys of function
//! `propagation` alternating between two modules that answer differently. B is polled over
//! one keep-alive connection, so the figure is the propagation, not the polling.

use std::time::{Duration, Instant};

use anyhow::Context;

/// Polls that the new version must arrive within.
const LIMIT: Duration = Duration::from_secs(10);

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let [admin, a, b, token, first, second, n] = args else {
        anyhow::bail!("usage: wafer-bench propagation ADMIN A B TOKEN MODULE1 MODULE2 N");
    };
    let n: usize = n.parse().context("N")?;
    let modules = [std::fs::read(first)?, std::fs::read(second)?];
    let client = reqwest::Client::new();
    let fetch = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await?.text().await }
    };
    // What each module answers, from A once deployed.
    let mut answers = Vec::new();
    for module in &modules {
        deploy(&client, admin, token, module).await?;
        answers.push(fetch(format!("{a}/propagation/")).await?);
    }
    anyhow::ensure!(answers[0] != answers[1], "the two modules answer alike");
    let mut after_ack = Vec::with_capacity(n);
    let mut whole = Vec::with_capacity(n);
    for i in 0..n {
        let which = i % 2;
        let started = Instant::now();
        deploy(&client, admin, token, &modules[which]).await?;
        let acked = Instant::now();
        loop {
            if fetch(format!("{b}/propagation/")).await? == answers[which] {
                break;
            }
            anyhow::ensure!(
                acked.elapsed() < LIMIT,
                "B did not serve deploy {i} within {LIMIT:?}"
            );
        }
        after_ack.push(acked.elapsed());
        whole.push(started.elapsed());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (what, mut times) in [
        ("after A answered the deploy", after_ack),
        ("from the deploy request", whole),
    ] {
        times.sort_unstable();
        println!(
            "  deploy on A served by B, {what}: median {:.2} ms, max {:.2} ms ({n} deploys)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}

async fn deploy(
    client: &reqwest::Client,
    admin: &str,
    token: &str,
    module: &[u8],
) -> anyhow::Result<()> {
    let response = client
        .put(format!("{admin}/_wafer/functions/propagation"))
        .bearer_auth(token)
        .body(module.to_vec())
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "deploy: {status} {}",
        response.text().await?
    );
    Ok(())
}
