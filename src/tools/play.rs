//! `recado demo --play`: customers write to the demo clients, so a newcomer sees the inbox fill,
//! acknowledgements go out and suggestions appear within a minute of starting.
//!
//! Each demo client gets a WhatsApp channel whose "Graph API" is a simulated provider in this process, on
//! loopback (it accepts every send, as Meta's servers would, and keeps nothing), and the player posts signed
//! WhatsApp webhook notifications to the server's own webhook, exactly as Meta posts them: the whole ingest
//! path runs, from the signature check to the rules and the outbox. The messages are the questions of each
//! client's own knowledge base, in its languages, from customers with names of those languages, a few
//! seconds apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::channels::whatsapp::{SIGNATURE_HEADER, WhatsAppConfig};
use crate::domain::ClientSlug;
use crate::store::Db;

/// The demo's customers, by language: `(name, greeting)`.
fn customers(language: &str) -> &'static [(&'static str, &'static str)] {
    match language {
        "ca" => &[("Jordi Puig", "Bon dia! "), ("Montse Vidal", "Hola, "), ("Pau Serra", "")],
        "es" => &[("Lucía Fernández", "¡Hola! "), ("Javier Romero", "Buenas, "), ("Carmen Ruiz", "")],
        "ru" => &[("Ирина Кузнецова", "Здравствуйте! "), ("Дмитрий Орлов", "Добрый день, "), ("Анна Волкова", "")],
        "it" => &[("Giulia Bianchi", "Buongiorno! "), ("Marco Rossi", "Salve, "), ("Francesca Greco", "")],
        "uk" => &[("Оксана Шевченко", "Добрий день! "), ("Тарас Коваль", "")],
        _ => &[("Emily Clarke", "Hi! "), ("James Patel", "Hello, "), ("Sophie Turner", "")],
    }
}

/// One message the player sends.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// To which client.
    pub client: ClientSlug,
    /// The customer's name.
    pub name: String,
    /// Their WhatsApp id (a phone number).
    pub wa_id: String,
    /// What they write.
    pub text: String,
}

/// The messages of a play: for each client, up to `per_client` of its articles' questions in its languages,
/// each from another customer; clients take turns, so every client's first message comes early.
///
/// # Errors
/// Reading the store fails.
pub async fn script(db: &Db, clients: &[ClientSlug], per_client: usize) -> anyhow::Result<Vec<Scripted>> {
    let mut by_client = Vec::new();
    for (client_index, slug) in clients.iter().enumerate() {
        let profile = db.client(slug.clone()).await?.profile;
        let mut messages = Vec::new();
        for (index, article) in db.all_articles(slug.clone()).await?.into_iter().enumerate() {
            if messages.len() == per_client || !profile.languages.contains(&article.content.language) {
                continue;
            }
            let Some(question) = article.content.questions.first() else { continue };
            let people = customers(&article.content.language);
            let (name, greeting) = people[index % people.len()];
            // A greeting before a question is how people write; after a comma the question goes on in lower case.
            let text = match greeting {
                "" => question.clone(),
                greeting if greeting.ends_with(", ") => format!("{greeting}{}", lower_first(question)),
                greeting => format!("{greeting}{question}"),
            };
            messages.push(Scripted {
                client: slug.clone(),
                name: name.to_owned(),
                wa_id: format!("3469{client_index:02}{index:05}"),
                text,
            });
        }
        by_client.push(messages.into_iter());
    }
    let mut turns = Vec::new();
    loop {
        let before = turns.len();
        turns.extend(by_client.iter_mut().filter_map(Iterator::next));
        if turns.len() == before {
            return Ok(turns);
        }
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // "¿" and "¡" open Spanish questions: keep them and lower the letter after.
        Some(first @ ('¿' | '¡')) => format!("{first}{}", lower_first(chars.as_str())),
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The simulated WhatsApp Graph API: answers every send as Meta does, with a new message id.
///
/// # Errors
/// Binding a loopback port fails.
pub async fn start_provider() -> anyhow::Result<String> {
    let sent = Arc::new(AtomicU64::new(0));
    let router = axum::Router::new().fallback(move || {
        let sent = Arc::clone(&sent);
        async move {
            let n = sent.fetch_add(1, Ordering::Relaxed);
            axum::Json(serde_json::json!({
                "messaging_product": "whatsapp",
                "messages": [{ "id": format!("wamid.demo-{n}") }]
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v21.0", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "the demo's simulated provider stopped");
        }
    });
    Ok(url)
}

/// Gives each client a WhatsApp channel whose Graph API is `provider`, with a new app secret; returns the
/// secrets, in the order of `clients`.
///
/// # Errors
/// Writing the store fails.
pub async fn connect(db: &Db, clients: &[ClientSlug], provider: &str) -> anyhow::Result<Vec<String>> {
    let mut secrets = Vec::with_capacity(clients.len());
    for (index, slug) in clients.iter().enumerate() {
        let secret = hex::encode(rand::random::<[u8; 16]>());
        let config = WhatsAppConfig {
            app_secret: secret.clone().into(),
            verify_token: hex::encode(rand::random::<[u8; 16]>()).into(),
            phone_number_id: format!("demo{index}"),
            access_token: "demo".into(),
            api_base_url: provider.to_owned(),
        };
        db.put_channel(slug.clone(), crate::domain::ChannelKind::WhatsApp, config, "demo".into()).await?;
        secrets.push(secret);
    }
    Ok(secrets)
}

/// A WhatsApp Cloud API notification of one text message, as Meta posts it.
fn notification(message: &Scripted, phone_number_id: &str, id: &str, timestamp: i64) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "DEMO", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "34930000000", "phone_number_id": phone_number_id },
            "contacts": [{ "wa_id": message.wa_id, "profile": { "name": message.name } }],
            "messages": [{ "id": id, "from": message.wa_id, "timestamp": timestamp.to_string(), "type": "text",
                           "text": { "body": message.text } }]
        }}]}]
    })
    .to_string()
}

/// Posts `script` to the server at `base`, one message every `every`, signed with each client's secret.
/// Returns how many the server acknowledged.
///
/// # Errors
/// Never for a refused message (it is logged and the play goes on); only when the HTTP client cannot be built.
pub async fn play(
    base: &str,
    clients: &[ClientSlug],
    secrets: &[String],
    script: &[Scripted],
    every: Duration,
) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut acknowledged = 0;
    for (n, message) in script.iter().enumerate() {
        let Some(index) = clients.iter().position(|slug| *slug == message.client) else { continue };
        let id = format!("wamid.demo-in-{}-{n}", crate::domain::Timestamp::now().millis());
        let body = notification(message, &format!("demo{index}"), &id, crate::domain::Timestamp::now().millis() / 1000);
        let signature = format!("sha256={}", crate::channels::hmac_sha256_hex(&secrets[index], body.as_bytes()));
        let sent = http
            .post(format!("{base}/webhooks/whatsapp/{}", message.client))
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => acknowledged += 1,
            Ok(response) => tracing::warn!(status = %response.status(), "the demo's message was refused"),
            Err(error) => tracing::warn!(%error, "the demo's message was not sent"),
        }
        if n + 1 < script.len() {
            tokio::time::sleep(every).await;
        }
    }
    Ok(acknowledged)
}

#[cfg(test)]
mod tests {
    use super::lower_first;

    #[test]
    fn a_question_after_a_comma_starts_lower_case() {
        assert_eq!(lower_first("¿Abrís el domingo?"), "¿abrís el domingo?");
        assert_eq!(lower_first("Когда вы открыты?"), "когда вы открыты?");
        assert_eq!(lower_first(""), "");
    }
}
