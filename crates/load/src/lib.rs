//! The load driver (`sneakerstop load`, used by `make bench`): drives a running marketplace over HTTP and reports what it took.
//!
//! Users are created up front (not timed). Workers then run a scenario in a closed loop
//! (`--concurrency` workers, each starting its next iteration when the last ends) or, with
//! `--rate`, start iterations at a fixed rate whatever the latency (open loop, so a slow
//! server shows up as latency rather than as fewer requests). A progress line is printed
//! every second; at the end a table (or `--json`) gives, per endpoint, requests/s,
//! p50/p95/p99/max latency and statuses; completed purchases/s and the end-to-end purchase
//! latency (pay → order complete and pair sold, as seen over HTTP); and the event hop
//! latency per consumer group, from the server's `event_hop_seconds` histogram.

mod client;
pub mod prometheus;
mod report;
mod scenarios;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};

use client::Api;
use stats::Recorder;

pub use report::Report;

/// What the simulated users do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Anonymous browsing: list pages with filters and sorts, view a listing.
    Browse,
    /// Signed-in sellers create listings.
    List,
    /// List → order → pay, then wait until the order is complete and the pair sold.
    Purchase,
    /// Release day: many buyers race to order and pay for a few pairs.
    Drop,
    /// 70% browse, 10% list, 20% purchase.
    Mixed,
    /// A credential-stuffing flood: most workers sign in with wrong passwords to many
    /// accounts from many addresses (`X-Forwarded-For`; start the server with
    /// `TRUSTED_PROXIES` naming the driver's address), while every eighth worker is an
    /// honest user who signs in and browses, whose latency is reported apart.
    #[serde(rename = "login-flood")]
    LoginFlood,
    /// A release-day drop on the market: buyers place bids and sellers list asks on a few
    /// hot products (three sizes each), prices overlapping so that books cross; some bids
    /// are placed low and cancelled. Matches become orders charged to saved cards. Needs an
    /// admin (`--admin-email`, `--admin-password`) to create the products. A probe places a
    /// rising bid on a product of its own every half second and measures how long until
    /// every one of `--market-streams` live streams (SSE) shows it.
    Market,
    /// Shoppers open the storefront's product pages (HTML rendered from three API reads) of
    /// a few products whose books hold asks, bids and a sale. Before the run, the weight of
    /// each storefront page (HTML and the CSS and script it links) is measured. Needs an
    /// admin, as the market does.
    Storefront,
}

/// Arguments of `sneakerstop load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The marketplace to drive.
    #[arg(long, env = "LOAD_BASE_URL", default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// What the users do.
    #[arg(long, value_enum, default_value = "mixed")]
    pub scenario: Scenario,
    /// How long to drive load.
    #[arg(long, default_value = "30s", value_parser = sneakerstop_settings::parse_duration)]
    pub duration: Duration,
    /// Workers in the closed loop (ignored with --rate).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Start this many scenario iterations per second instead (open loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Users created before the run (buyers and sellers).
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Listings created before the run (not timed), for browsing.
    #[arg(long, default_value_t = 200)]
    pub seed_listings: usize,
    /// Pairs on sale in the drop scenario.
    #[arg(long, default_value_t = 10)]
    pub drop_pairs: usize,
    /// Market scenario: hot products traded.
    #[arg(long, default_value_t = 4)]
    pub market_products: usize,
    /// Market scenario: live market streams (SSE) the probe watches.
    #[arg(long, default_value_t = 20)]
    pub market_streams: usize,
    /// Market scenario: an admin's email (`sneakerstop admin grant`), to create products.
    #[arg(long, env = "LOAD_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Market scenario: that admin's password.
    #[arg(long, env = "LOAD_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// The yardstick: PostgreSQL's ceiling in transactions/s for the one-statement listing and
    /// outbox insert, measured on this machine in the same run (`make bench` measures it with
    /// pgbench). Every throughput is then also reported as a ratio to it, so that runs on
    /// machines of different speed compare.
    #[arg(long)]
    pub yardstick: Option<f64>,
    /// Pid of the server, to report its peak resident memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

/// Shared by every worker.
#[derive(Debug)]
struct Run {
    api: Api,
    scenario: Scenario,
    users: Vec<client::User>,
    listings: Vec<String>,
    drop_pairs: Vec<String>,
    /// Market scenario: the products traded.
    products: Vec<String>,
    deadline: Instant,
    requests: AtomicU64,
    errors: AtomicU64,
    purchases: AtomicU64,
}

/// Runs the load and prints the report.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let report = drive(&args).await?;
    let json = serde_json::to_string_pretty(&report)? + "\n";
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json).with_context(|| format!("write {}", path.display()))?;
    }
    let text = if args.json { json } else { report.table() };
    use std::io::Write;
    std::io::stdout().lock().write_all(text.as_bytes()).context("write the report")?;
    Ok(())
}

/// Sets up, drives the scenario and measures; returns the report.
pub async fn drive(args: &LoadArgs) -> anyhow::Result<Report> {
    let api = Api::new(&args.base_url)?;
    api.metrics().await.context("read the server's /metrics (is it running?)")?;
    // What a run before this one left rippling (a market paced past what its consumers keep
    // up with, say) is not this set-up's: a replica still behind would refuse its requests.
    settle(&api).await?;

    eprintln!("setting up: {} users, {} listings", args.users, args.seed_listings);
    let users = scenarios::users(&api, args.users.max(2)).await?;
    let listings = scenarios::seed_listings(&api, &users, args.seed_listings).await?;
    let drop_pairs = if args.scenario == Scenario::Drop {
        scenarios::seed_listings(&api, &users[..1], args.drop_pairs).await?
    } else {
        Vec::new()
    };
    let (products, probe_product) = if matches!(args.scenario, Scenario::Market | Scenario::Storefront) {
        let (Some(email), Some(password)) = (&args.admin_email, &args.admin_password) else {
            anyhow::bail!("this scenario needs an admin to create products: --admin-email and --admin-password");
        };
        let admin = api.signin_user(email, password).await.context("sign the admin in")?;
        let mut products = scenarios::seed_market(&api, &admin, &users, args.market_products + 1).await?;
        if args.scenario == Scenario::Storefront {
            // The buyers' bids need the market to have heard of their saved cards.
            settle(&api).await?;
            scenarios::seed_books(&api, &users, &products).await?;
            (products, None)
        } else {
            let probe = products.pop();
            (products, probe)
        }
    } else {
        (Vec::new(), None)
    };
    settle(&api).await?;
    let pages = match (args.scenario, products.first()) {
        (Scenario::Storefront, Some(product)) => scenarios::page_weights(&api, &users[0], product).await?,
        _ => Vec::new(),
    };
    // Counted from here: set-up's events are not the run's.
    let before = api.metrics().await.context("read the server's /metrics")?;

    let started = Instant::now();
    let probe = probe_product.map(|product| {
        let (api, buyer) = (api.clone(), users[0].clone());
        tokio::spawn(scenarios::stream_probe(api, buyer, product, args.market_streams, started + args.duration))
    });
    let run = Arc::new(Run {
        api,
        scenario: args.scenario,
        users,
        listings,
        drop_pairs,
        products,
        deadline: started + args.duration,
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        purchases: AtomicU64::new(0),
    });
    let progress = tokio::spawn(progress(run.clone(), args.server_pid));
    let recorder = match args.rate {
        Some(rate) => open_loop(run.clone(), rate).await,
        None => closed_loop(run.clone(), args.concurrency.max(1)).await,
    };
    let elapsed = started.elapsed();
    let peak_rss = progress.await.unwrap_or(None);
    eprintln!();

    let fanout = match probe {
        Some(probe) => Some(probe.await.context("the stream probe failed")??),
        None => None,
    };
    let after = run.api.metrics().await.context("read the server's /metrics after the run")?;
    Ok(Report::new(args, &recorder, elapsed, &before, &after, peak_rss).with_fanout(fanout.as_ref()).with_pages(pages))
}

/// Waits until the set-up has rippled through: every outbox empty and every consumer caught
/// up, so the measured run does not pay for the set-up's events. A server that runs
/// consumers reports their lag within a few seconds of starting; until it has, nothing is
/// known to be caught up.
async fn settle(api: &Api) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let metrics = api.metrics().await?;
        let (backlog, lag) = (prometheus::sum(&metrics, "outbox_backlog"), prometheus::sum(&metrics, "consumer_lag"));
        let lag_known = lag.is_some() || started.elapsed() > Duration::from_secs(10);
        let (backlog, lag) = (backlog.unwrap_or(0.0), lag.unwrap_or(0.0));
        if backlog == 0.0 && lag == 0.0 && lag_known {
            eprintln!("\rsettled after {:.0} s{:30}", started.elapsed().as_secs_f64(), "");
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "events did not settle in 15 minutes");
        eprint!("\rwaiting for events to settle: outbox {backlog:.0}, consumer lag {lag:.0}   ");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn closed_loop(run: Arc<Run>, workers: usize) -> Recorder {
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                let mut iteration = worker;
                while Instant::now() < run.deadline {
                    scenarios::iteration(&run, &mut rec, worker, iteration).await;
                    iteration += workers;
                }
                rec
            })
        })
        .collect();
    merge(futures::future::join_all(tasks).await)
}

async fn open_loop(run: Arc<Run>, rate: f64) -> Recorder {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Recorders are reused, one per iteration in flight: a recorder's histograms take a few
    // hundred KB each, and making them at the rate (and keeping them all to the end) was
    // once most of the driver's CPU — the kernel zeroing fresh pages — taken from the
    // system it measures.
    let idle: Arc<std::sync::Mutex<Vec<Recorder>>> = Arc::default();
    let take = |idle: &std::sync::Mutex<Vec<Recorder>>| idle.lock().map(|mut idle| idle.pop()).ok().flatten();
    let mut tasks = Vec::new();
    let mut iteration = 0;
    while Instant::now() < run.deadline {
        ticker.tick().await;
        let (run, idle) = (run.clone(), idle.clone());
        tasks.push(tokio::spawn(async move {
            let mut rec = take(&idle).unwrap_or_default();
            scenarios::iteration(&run, &mut rec, iteration, iteration).await;
            if let Ok(mut idle) = idle.lock() {
                idle.push(rec);
            }
        }));
        iteration += 1;
    }
    futures::future::join_all(tasks).await;
    merge(std::iter::from_fn(|| take(&idle)).map(Ok).collect())
}

fn merge(results: Vec<Result<Recorder, tokio::task::JoinError>>) -> Recorder {
    let mut total = Recorder::default();
    for rec in results.into_iter().flatten() {
        total.merge(rec);
    }
    total
}

/// Prints a progress line every second until the deadline; returns the server's peak RSS.
async fn progress(run: Arc<Run>, pid: Option<u32>) -> Option<u64> {
    let started = Instant::now();
    let mut peak = None;
    let mut last = 0;
    while Instant::now() < run.deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let requests = run.requests.load(Ordering::Relaxed);
        if let Some(rss) = pid.and_then(report::rss_kib) {
            peak = Some(peak.unwrap_or(0).max(rss));
        }
        eprint!(
            "\r{:>4.0}s  {:>8} requests  {:>7} req/s  {:>5} errors  {:>6} purchases{}   ",
            started.elapsed().as_secs_f64(),
            requests,
            requests - last,
            run.errors.load(Ordering::Relaxed),
            run.purchases.load(Ordering::Relaxed),
            peak.map(|kib| format!("  rss {} MiB", kib / 1024)).unwrap_or_default(),
        );
        last = requests;
    }
    peak
}
