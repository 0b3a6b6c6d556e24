//! `sneakerstop dlq`: list and replay dead letters.

use anyhow::Context;
use clap::{Args, Subcommand};
use sneakerstop_messaging::Kafka;
use sneakerstop_messaging::dlq::{self, DeadLetter};
use sneakerstop_settings::KafkaSettings;

/// Arguments of `sneakerstop dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    kafka: KafkaSettings,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Print the dead letters of one or every topic, one JSON object per line.
    List {
        /// The original topic (e.g. `orders.orders`); every topic when omitted.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Re-publish dead letters to their original topic.
    Replay {
        /// The original topic whose dead letters to replay.
        #[arg(long)]
        topic: String,
        /// Replay only the event with this id (`ce_id`); all of the topic's otherwise.
        #[arg(long)]
        event_id: Option<String>,
    },
}

/// Runs a `dlq` subcommand.
pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let kafka = Kafka::from_settings(&args.kafka)?;
    match args.command {
        DlqCommand::List { topic } => {
            let topics: Vec<String> = match topic {
                Some(topic) => vec![topic],
                None => sneakerstop_events::topics::ALL.iter().map(|t| (*t).to_owned()).collect(),
            };
            let mut out = String::new();
            for topic in topics {
                for letter in dlq::list(&kafka, &topic).await? {
                    out.push_str(&serde_json::to_string(&letter)?);
                    out.push('\n');
                }
            }
            print(&out);
        }
        DlqCommand::Replay { topic, event_id } => {
            let letters: Vec<DeadLetter> = dlq::list(&kafka, &topic)
                .await?
                .into_iter()
                .filter(|l| event_id.as_deref().is_none_or(|id| l.event_id() == Some(id)))
                .collect();
            if let Some(id) = &event_id {
                anyhow::ensure!(!letters.is_empty(), "no dead letter with event id {id} on {topic}.dlq");
            }
            let producer = kafka.producer()?;
            let count = dlq::replay(&producer, &letters).await.context("replay")?;
            print(&format!("{}\n", serde_json::json!({"replayed": count, "topic": topic})));
        }
    }
    Ok(())
}

/// Command output goes to stdout (logs go there too, as JSON lines, so keep it parseable).
fn print(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
